#!/usr/bin/python3
"""Spot-check proto/csi.proto against the CSI spec v1.12.0.

Usage: check_proto.py DIR
  DIR holds csi_pb2.py generated from proto/csi.proto, e.g.
  python3 -m grpc_tools.protoc -Iproto -I/usr/include --python_out=DIR proto/csi.proto

Every expected value below was taken from the published spec's generated
descriptor (container-storage-interface/spec lib/go/csi), not from our own
proto; what v1.13 added (the volume-health RPCs) is checked to be absent.
Exits 1 and lists every mismatch if any fact does not hold.
"""
import sys

from google.protobuf import descriptor as D

PKG = "csi.v1"

# (message, field, number, kind): kind is a scalar type name, a message or
# enum full name, "map" (map<string, string>), or "repeated X".
FIELDS = [
    ("GetPluginInfoResponse", "name", 1, "string"),
    ("GetPluginInfoResponse", "vendor_version", 2, "string"),
    ("GetPluginInfoResponse", "manifest", 3, "map"),
    ("GetPluginCapabilitiesResponse", "capabilities", 1, "repeated csi.v1.PluginCapability"),
    ("PluginCapability", "service", 1, "csi.v1.PluginCapability.Service"),
    ("PluginCapability", "volume_expansion", 2, "csi.v1.PluginCapability.VolumeExpansion"),
    ("ProbeResponse", "ready", 1, "google.protobuf.BoolValue"),
    ("CreateVolumeRequest", "name", 1, "string"),
    ("CreateVolumeRequest", "capacity_range", 2, "csi.v1.CapacityRange"),
    ("CreateVolumeRequest", "volume_capabilities", 3, "repeated csi.v1.VolumeCapability"),
    ("CreateVolumeRequest", "parameters", 4, "map"),
    ("CreateVolumeRequest", "secrets", 5, "map"),
    ("CreateVolumeRequest", "volume_content_source", 6, "csi.v1.VolumeContentSource"),
    ("CreateVolumeRequest", "accessibility_requirements", 7, "csi.v1.TopologyRequirement"),
    ("CreateVolumeRequest", "mutable_parameters", 8, "map"),
    ("VolumeContentSource", "snapshot", 1, "csi.v1.VolumeContentSource.SnapshotSource"),
    ("VolumeContentSource", "volume", 2, "csi.v1.VolumeContentSource.VolumeSource"),
    ("VolumeCapability", "block", 1, "csi.v1.VolumeCapability.BlockVolume"),
    ("VolumeCapability", "mount", 2, "csi.v1.VolumeCapability.MountVolume"),
    ("VolumeCapability", "access_mode", 3, "csi.v1.VolumeCapability.AccessMode"),
    ("VolumeCapability.MountVolume", "fs_type", 1, "string"),
    ("VolumeCapability.MountVolume", "mount_flags", 2, "repeated string"),
    ("VolumeCapability.MountVolume", "volume_mount_group", 3, "string"),
    ("VolumeCapability.AccessMode", "mode", 1, "csi.v1.VolumeCapability.AccessMode.Mode"),
    ("CapacityRange", "required_bytes", 1, "int64"),
    ("CapacityRange", "limit_bytes", 2, "int64"),
    ("Volume", "capacity_bytes", 1, "int64"),
    ("Volume", "volume_id", 2, "string"),
    ("Volume", "volume_context", 3, "map"),
    ("Volume", "content_source", 4, "csi.v1.VolumeContentSource"),
    ("Volume", "accessible_topology", 5, "repeated csi.v1.Topology"),
    ("Topology", "segments", 1, "map"),
    ("ControllerPublishVolumeRequest", "volume_id", 1, "string"),
    ("ControllerPublishVolumeRequest", "node_id", 2, "string"),
    ("ControllerPublishVolumeRequest", "volume_capability", 3, "csi.v1.VolumeCapability"),
    ("ControllerPublishVolumeRequest", "readonly", 4, "bool"),
    ("ControllerPublishVolumeRequest", "secrets", 5, "map"),
    ("ControllerPublishVolumeRequest", "volume_context", 6, "map"),
    ("ControllerPublishVolumeResponse", "publish_context", 1, "map"),
    ("ValidateVolumeCapabilitiesRequest", "mutable_parameters", 6, "map"),
    ("ValidateVolumeCapabilitiesResponse", "confirmed", 1,
     "csi.v1.ValidateVolumeCapabilitiesResponse.Confirmed"),
    ("ValidateVolumeCapabilitiesResponse", "message", 2, "string"),
    ("ValidateVolumeCapabilitiesResponse.Confirmed", "mutable_parameters", 4, "map"),
    ("ListVolumesRequest", "max_entries", 1, "int32"),
    ("ListVolumesRequest", "starting_token", 2, "string"),
    ("ListVolumesResponse", "entries", 1, "repeated csi.v1.ListVolumesResponse.Entry"),
    ("ListVolumesResponse", "next_token", 2, "string"),
    ("ListVolumesResponse.VolumeStatus", "published_node_ids", 1, "repeated string"),
    ("ListVolumesResponse.VolumeStatus", "volume_condition", 2, "csi.v1.VolumeCondition"),
    ("ListVolumesResponse.Entry", "status", 2, "csi.v1.ListVolumesResponse.VolumeStatus"),
    ("ControllerGetVolumeResponse", "status", 2, "csi.v1.ControllerGetVolumeResponse.VolumeStatus"),
    ("ControllerModifyVolumeRequest", "volume_id", 1, "string"),
    ("ControllerModifyVolumeRequest", "secrets", 2, "map"),
    ("ControllerModifyVolumeRequest", "mutable_parameters", 3, "map"),
    ("GetCapacityRequest", "accessible_topology", 3, "csi.v1.Topology"),
    ("GetCapacityResponse", "available_capacity", 1, "int64"),
    ("GetCapacityResponse", "maximum_volume_size", 2, "google.protobuf.Int64Value"),
    ("GetCapacityResponse", "minimum_volume_size", 3, "google.protobuf.Int64Value"),
    ("ControllerServiceCapability", "rpc", 1, "csi.v1.ControllerServiceCapability.RPC"),
    ("CreateSnapshotRequest", "source_volume_id", 1, "string"),
    ("CreateSnapshotRequest", "name", 2, "string"),
    ("CreateSnapshotRequest", "secrets", 3, "map"),
    ("CreateSnapshotRequest", "parameters", 4, "map"),
    ("Snapshot", "size_bytes", 1, "int64"),
    ("Snapshot", "snapshot_id", 2, "string"),
    ("Snapshot", "source_volume_id", 3, "string"),
    ("Snapshot", "creation_time", 4, "google.protobuf.Timestamp"),
    ("Snapshot", "ready_to_use", 5, "bool"),
    ("Snapshot", "group_snapshot_id", 6, "string"),
    ("ListSnapshotsRequest", "max_entries", 1, "int32"),
    ("ListSnapshotsRequest", "starting_token", 2, "string"),
    ("ListSnapshotsRequest", "source_volume_id", 3, "string"),
    ("ListSnapshotsRequest", "snapshot_id", 4, "string"),
    ("ListSnapshotsRequest", "secrets", 5, "map"),
    ("GetSnapshotRequest", "snapshot_id", 1, "string"),
    ("GetSnapshotRequest", "secrets", 2, "map"),
    ("GetSnapshotResponse", "snapshot", 1, "csi.v1.Snapshot"),
    ("ControllerExpandVolumeRequest", "volume_capability", 4, "csi.v1.VolumeCapability"),
    ("ControllerExpandVolumeResponse", "capacity_bytes", 1, "int64"),
    ("ControllerExpandVolumeResponse", "node_expansion_required", 2, "bool"),
    ("NodeStageVolumeRequest", "volume_id", 1, "string"),
    ("NodeStageVolumeRequest", "publish_context", 2, "map"),
    ("NodeStageVolumeRequest", "staging_target_path", 3, "string"),
    ("NodeStageVolumeRequest", "volume_capability", 4, "csi.v1.VolumeCapability"),
    ("NodeStageVolumeRequest", "secrets", 5, "map"),
    ("NodeStageVolumeRequest", "volume_context", 6, "map"),
    ("NodeUnstageVolumeRequest", "staging_target_path", 2, "string"),
    ("NodePublishVolumeRequest", "staging_target_path", 3, "string"),
    ("NodePublishVolumeRequest", "target_path", 4, "string"),
    ("NodePublishVolumeRequest", "volume_capability", 5, "csi.v1.VolumeCapability"),
    ("NodePublishVolumeRequest", "readonly", 6, "bool"),
    ("NodePublishVolumeRequest", "secrets", 7, "map"),
    ("NodePublishVolumeRequest", "volume_context", 8, "map"),
    ("NodeUnpublishVolumeRequest", "target_path", 2, "string"),
    ("NodeGetVolumeStatsRequest", "volume_path", 2, "string"),
    ("NodeGetVolumeStatsRequest", "staging_target_path", 3, "string"),
    ("NodeGetVolumeStatsResponse", "usage", 1, "repeated csi.v1.VolumeUsage"),
    ("NodeGetVolumeStatsResponse", "volume_condition", 2, "csi.v1.VolumeCondition"),
    ("VolumeUsage", "available", 1, "int64"),
    ("VolumeUsage", "total", 2, "int64"),
    ("VolumeUsage", "used", 3, "int64"),
    ("VolumeUsage", "unit", 4, "csi.v1.VolumeUsage.Unit"),
    ("VolumeCondition", "abnormal", 1, "bool"),
    ("VolumeCondition", "message", 2, "string"),
    ("NodeGetInfoResponse", "node_id", 1, "string"),
    ("NodeGetInfoResponse", "max_volumes_per_node", 2, "int64"),
    ("NodeGetInfoResponse", "accessible_topology", 3, "csi.v1.Topology"),
    ("NodeExpandVolumeRequest", "volume_id", 1, "string"),
    ("NodeExpandVolumeRequest", "volume_path", 2, "string"),
    ("NodeExpandVolumeRequest", "capacity_range", 3, "csi.v1.CapacityRange"),
    ("NodeExpandVolumeRequest", "staging_target_path", 4, "string"),
    ("NodeExpandVolumeRequest", "volume_capability", 5, "csi.v1.VolumeCapability"),
    ("NodeExpandVolumeRequest", "secrets", 6, "map"),
    ("NodeExpandVolumeResponse", "capacity_bytes", 1, "int64"),
    ("CreateVolumeGroupSnapshotRequest", "name", 1, "string"),
    ("CreateVolumeGroupSnapshotRequest", "source_volume_ids", 2, "repeated string"),
    ("CreateVolumeGroupSnapshotRequest", "secrets", 3, "map"),
    ("CreateVolumeGroupSnapshotRequest", "parameters", 4, "map"),
    ("VolumeGroupSnapshot", "group_snapshot_id", 1, "string"),
    ("VolumeGroupSnapshot", "snapshots", 2, "repeated csi.v1.Snapshot"),
    ("VolumeGroupSnapshot", "creation_time", 3, "google.protobuf.Timestamp"),
    ("VolumeGroupSnapshot", "ready_to_use", 4, "bool"),
    ("DeleteVolumeGroupSnapshotRequest", "snapshot_ids", 2, "repeated string"),
    ("GetVolumeGroupSnapshotRequest", "secrets", 3, "map"),
    ("BlockMetadata", "byte_offset", 1, "int64"),
    ("BlockMetadata", "size_bytes", 2, "int64"),
    ("GetMetadataAllocatedRequest", "snapshot_id", 1, "string"),
    ("GetMetadataAllocatedRequest", "starting_offset", 2, "int64"),
    ("GetMetadataAllocatedRequest", "max_results", 3, "int32"),
    ("GetMetadataAllocatedRequest", "secrets", 4, "map"),
    ("GetMetadataAllocatedResponse", "block_metadata_type", 1, "csi.v1.BlockMetadataType"),
    ("GetMetadataAllocatedResponse", "volume_capacity_bytes", 2, "int64"),
    ("GetMetadataAllocatedResponse", "block_metadata", 3, "repeated csi.v1.BlockMetadata"),
    ("GetMetadataDeltaRequest", "base_snapshot_id", 1, "string"),
    ("GetMetadataDeltaRequest", "target_snapshot_id", 2, "string"),
    ("GetMetadataDeltaRequest", "starting_offset", 3, "int64"),
    ("GetMetadataDeltaRequest", "max_results", 4, "int32"),
    ("GetMetadataDeltaRequest", "secrets", 5, "map"),
    ("GetMetadataDeltaResponse", "block_metadata_type", 1, "csi.v1.BlockMetadataType"),
    ("GetMetadataDeltaResponse", "volume_capacity_bytes", 2, "int64"),
    ("GetMetadataDeltaResponse", "block_metadata", 3, "repeated csi.v1.BlockMetadata"),
]

# Exact field sets of a few messages (catches extra or missing fields).
FIELD_SETS = {
    "CreateSnapshotRequest": {"source_volume_id", "name", "secrets", "parameters"},
    "Snapshot": {"size_bytes", "snapshot_id", "source_volume_id", "creation_time",
                 "ready_to_use", "group_snapshot_id"},
    "GetMetadataDeltaRequest": {"base_snapshot_id", "target_snapshot_id", "starting_offset",
                                "max_results", "secrets"},
    "NodeGetVolumeStatsResponse": {"usage", "volume_condition"},
    "ListVolumesResponse.VolumeStatus": {"published_node_ids", "volume_condition"},
}

# Oneofs: message -> {oneof name: set of member fields}.
ONEOFS = {
    "PluginCapability": {"type": {"service", "volume_expansion"}},
    "VolumeContentSource": {"type": {"snapshot", "volume"}},
    "VolumeCapability": {"access_type": {"block", "mount"}},
    "ControllerServiceCapability": {"type": {"rpc"}},
    "NodeServiceCapability": {"type": {"rpc"}},
    "GroupControllerServiceCapability": {"type": {"rpc"}},
}

# Whole enums, value by value (exact: no extra values).
ENUMS = {
    "BlockMetadataType": {"UNKNOWN": 0, "FIXED_LENGTH": 1, "VARIABLE_LENGTH": 2},
    "PluginCapability.Service.Type": {
        "UNKNOWN": 0, "CONTROLLER_SERVICE": 1, "VOLUME_ACCESSIBILITY_CONSTRAINTS": 2,
        "GROUP_CONTROLLER_SERVICE": 3, "SNAPSHOT_METADATA_SERVICE": 4},
    "PluginCapability.VolumeExpansion.Type": {"UNKNOWN": 0, "ONLINE": 1, "OFFLINE": 2},
    "VolumeCapability.AccessMode.Mode": {
        "UNKNOWN": 0, "SINGLE_NODE_WRITER": 1, "SINGLE_NODE_READER_ONLY": 2,
        "MULTI_NODE_READER_ONLY": 3, "MULTI_NODE_SINGLE_WRITER": 4,
        "MULTI_NODE_MULTI_WRITER": 5, "SINGLE_NODE_SINGLE_WRITER": 6,
        "SINGLE_NODE_MULTI_WRITER": 7},
    "ControllerServiceCapability.RPC.Type": {
        "UNKNOWN": 0, "CREATE_DELETE_VOLUME": 1, "PUBLISH_UNPUBLISH_VOLUME": 2,
        "LIST_VOLUMES": 3, "GET_CAPACITY": 4, "CREATE_DELETE_SNAPSHOT": 5,
        "LIST_SNAPSHOTS": 6, "CLONE_VOLUME": 7, "PUBLISH_READONLY": 8,
        "EXPAND_VOLUME": 9, "LIST_VOLUMES_PUBLISHED_NODES": 10, "VOLUME_CONDITION": 11,
        "GET_VOLUME": 12, "SINGLE_NODE_MULTI_WRITER": 13, "MODIFY_VOLUME": 14,
        "GET_SNAPSHOT": 15},
    "VolumeUsage.Unit": {"UNKNOWN": 0, "BYTES": 1, "INODES": 2},
    "NodeServiceCapability.RPC.Type": {
        "UNKNOWN": 0, "STAGE_UNSTAGE_VOLUME": 1, "GET_VOLUME_STATS": 2, "EXPAND_VOLUME": 3,
        "VOLUME_CONDITION": 4, "SINGLE_NODE_MULTI_WRITER": 5, "VOLUME_MOUNT_GROUP": 6},
    "GroupControllerServiceCapability.RPC.Type": {
        "UNKNOWN": 0, "CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT": 1},
}

# Services: method -> (input, output, server streaming); exact method sets.
SERVICES = {
    "Identity": {
        "GetPluginInfo": ("GetPluginInfoRequest", "GetPluginInfoResponse", False),
        "GetPluginCapabilities": ("GetPluginCapabilitiesRequest", "GetPluginCapabilitiesResponse", False),
        "Probe": ("ProbeRequest", "ProbeResponse", False),
    },
    "Controller": {
        "CreateVolume": ("CreateVolumeRequest", "CreateVolumeResponse", False),
        "DeleteVolume": ("DeleteVolumeRequest", "DeleteVolumeResponse", False),
        "ControllerPublishVolume": ("ControllerPublishVolumeRequest", "ControllerPublishVolumeResponse", False),
        "ControllerUnpublishVolume": ("ControllerUnpublishVolumeRequest", "ControllerUnpublishVolumeResponse", False),
        "ValidateVolumeCapabilities": ("ValidateVolumeCapabilitiesRequest", "ValidateVolumeCapabilitiesResponse", False),
        "ListVolumes": ("ListVolumesRequest", "ListVolumesResponse", False),
        "GetCapacity": ("GetCapacityRequest", "GetCapacityResponse", False),
        "ControllerGetCapabilities": ("ControllerGetCapabilitiesRequest", "ControllerGetCapabilitiesResponse", False),
        "CreateSnapshot": ("CreateSnapshotRequest", "CreateSnapshotResponse", False),
        "DeleteSnapshot": ("DeleteSnapshotRequest", "DeleteSnapshotResponse", False),
        "ListSnapshots": ("ListSnapshotsRequest", "ListSnapshotsResponse", False),
        "GetSnapshot": ("GetSnapshotRequest", "GetSnapshotResponse", False),
        "ControllerExpandVolume": ("ControllerExpandVolumeRequest", "ControllerExpandVolumeResponse", False),
        "ControllerGetVolume": ("ControllerGetVolumeRequest", "ControllerGetVolumeResponse", False),
        "ControllerModifyVolume": ("ControllerModifyVolumeRequest", "ControllerModifyVolumeResponse", False),
    },
    "GroupController": {
        "GroupControllerGetCapabilities": ("GroupControllerGetCapabilitiesRequest",
                                           "GroupControllerGetCapabilitiesResponse", False),
        "CreateVolumeGroupSnapshot": ("CreateVolumeGroupSnapshotRequest", "CreateVolumeGroupSnapshotResponse", False),
        "DeleteVolumeGroupSnapshot": ("DeleteVolumeGroupSnapshotRequest", "DeleteVolumeGroupSnapshotResponse", False),
        "GetVolumeGroupSnapshot": ("GetVolumeGroupSnapshotRequest", "GetVolumeGroupSnapshotResponse", False),
    },
    "SnapshotMetadata": {
        "GetMetadataAllocated": ("GetMetadataAllocatedRequest", "GetMetadataAllocatedResponse", True),
        "GetMetadataDelta": ("GetMetadataDeltaRequest", "GetMetadataDeltaResponse", True),
    },
    "Node": {
        "NodeStageVolume": ("NodeStageVolumeRequest", "NodeStageVolumeResponse", False),
        "NodeUnstageVolume": ("NodeUnstageVolumeRequest", "NodeUnstageVolumeResponse", False),
        "NodePublishVolume": ("NodePublishVolumeRequest", "NodePublishVolumeResponse", False),
        "NodeUnpublishVolume": ("NodeUnpublishVolumeRequest", "NodeUnpublishVolumeResponse", False),
        "NodeGetVolumeStats": ("NodeGetVolumeStatsRequest", "NodeGetVolumeStatsResponse", False),
        "NodeExpandVolume": ("NodeExpandVolumeRequest", "NodeExpandVolumeResponse", False),
        "NodeGetCapabilities": ("NodeGetCapabilitiesRequest", "NodeGetCapabilitiesResponse", False),
        "NodeGetInfo": ("NodeGetInfoRequest", "NodeGetInfoResponse", False),
    },
}

# Option extensions: name -> (extended options message, field number).
EXTENSIONS = {
    "alpha_enum": ("google.protobuf.EnumOptions", 1060),
    "alpha_enum_value": ("google.protobuf.EnumValueOptions", 1060),
    "csi_secret": ("google.protobuf.FieldOptions", 1059),
    "alpha_field": ("google.protobuf.FieldOptions", 1060),
    "alpha_message": ("google.protobuf.MessageOptions", 1060),
    "alpha_method": ("google.protobuf.MethodOptions", 1060),
    "alpha_service": ("google.protobuf.ServiceOptions", 1060),
}

# v1.12 has 79 top-level messages and one top-level enum.
TOP_LEVEL_MESSAGES = 79

# Added only in v1.13 (volume health): must not be here.
ABSENT_MESSAGES = ["VolumeHealth", "ControllerListVolumeHealthRequest",
                   "ControllerGetVolumeHealthRequest", "NodeGetVolumeHealthRequest",
                   "NodeGetStorageHealthRequest"]
ABSENT_ENUMS = ["VolumeHealthErrorType", "StorageHealthErrorType"]

SCALARS = {
    D.FieldDescriptor.TYPE_STRING: "string", D.FieldDescriptor.TYPE_BOOL: "bool",
    D.FieldDescriptor.TYPE_INT64: "int64", D.FieldDescriptor.TYPE_INT32: "int32",
    D.FieldDescriptor.TYPE_BYTES: "bytes", D.FieldDescriptor.TYPE_UINT64: "uint64",
    D.FieldDescriptor.TYPE_UINT32: "uint32", D.FieldDescriptor.TYPE_DOUBLE: "double",
}


def kind_of(f):
    """Describe a field the way FIELDS does."""
    if f.type == D.FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
        k, v = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
        if k.type == v.type == D.FieldDescriptor.TYPE_STRING:
            return "map"
        return "map<?>"
    if f.type == D.FieldDescriptor.TYPE_MESSAGE:
        base = f.message_type.full_name
    elif f.type == D.FieldDescriptor.TYPE_ENUM:
        base = f.enum_type.full_name
    else:
        base = SCALARS.get(f.type, "type%d" % f.type)
    if f.label == D.FieldDescriptor.LABEL_REPEATED:
        return "repeated " + base
    return base


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    sys.path.insert(0, sys.argv[1])
    import csi_pb2  # noqa: E402  (generated module, found through argv[1])

    fd = csi_pb2.DESCRIPTOR
    bad = []
    checked = 0

    def expect(cond, what):
        nonlocal checked
        checked += 1
        if not cond:
            bad.append(what)

    def msg(path):
        try:
            return fd.pool.FindMessageTypeByName(PKG + "." + path)
        except KeyError:
            return None

    expect(fd.package == PKG, "package is %r, want %r" % (fd.package, PKG))
    expect(fd.syntax == "proto3", "syntax is %r" % fd.syntax)
    deps = sorted(d.name for d in fd.dependencies)
    want_deps = ["google/protobuf/descriptor.proto", "google/protobuf/timestamp.proto",
                 "google/protobuf/wrappers.proto"]
    expect(deps == want_deps, "imports %s, want %s" % (deps, want_deps))

    for m, name, number, kind in FIELDS:
        md = msg(m)
        if md is None:
            expect(False, "message %s missing" % m)
            continue
        f = md.fields_by_name.get(name)
        if f is None:
            expect(False, "%s.%s missing" % (m, name))
            continue
        expect(f.number == number, "%s.%s = %d, want %d" % (m, name, f.number, number))
        got = kind_of(f)
        expect(got == kind, "%s.%s is %s, want %s" % (m, name, got, kind))

    for m, names in FIELD_SETS.items():
        md = msg(m)
        got = set(md.fields_by_name) if md else set()
        expect(got == names, "%s fields %s, want %s" % (m, sorted(got), sorted(names)))

    for m, oneofs in ONEOFS.items():
        md = msg(m)
        got = {o.name: {f.name for f in o.fields} for o in md.oneofs} if md else {}
        expect(got == oneofs, "%s oneofs %s, want %s" % (m, got, oneofs))

    for e, values in ENUMS.items():
        try:
            ed = fd.pool.FindEnumTypeByName(PKG + "." + e)
        except KeyError:
            expect(False, "enum %s missing" % e)
            continue
        got = {v.name: v.number for v in ed.values}
        expect(got == values, "enum %s = %s, want %s" % (e, got, values))

    got_services = [s.name for s in fd.services_by_name.values()]
    expect(sorted(got_services) == sorted(SERVICES),
           "services %s, want %s" % (sorted(got_services), sorted(SERVICES)))
    for s, methods in SERVICES.items():
        sd = fd.services_by_name.get(s)
        if sd is None:
            continue
        got = {m.name for m in sd.methods}
        expect(got == set(methods), "service %s methods %s, want %s"
               % (s, sorted(got), sorted(methods)))
        for name, (inp, out, stream) in methods.items():
            m = sd.methods_by_name.get(name)
            if m is None:
                continue
            expect(m.input_type.full_name == PKG + "." + inp,
                   "%s.%s input %s" % (s, name, m.input_type.full_name))
            expect(m.output_type.full_name == PKG + "." + out,
                   "%s.%s output %s" % (s, name, m.output_type.full_name))
            # Python descriptors expose streaming only through the proto form.
            from google.protobuf import descriptor_pb2
            mp = descriptor_pb2.MethodDescriptorProto()
            m.CopyToProto(mp)
            expect(mp.server_streaming == stream and not mp.client_streaming,
                   "%s.%s streaming (client %s, server %s), want server %s"
                   % (s, name, mp.client_streaming, mp.server_streaming, stream))

    for name, (extendee, number) in EXTENSIONS.items():
        x = fd.extensions_by_name.get(name)
        if x is None:
            expect(False, "extension %s missing" % name)
            continue
        expect(x.number == number, "extension %s = %d, want %d" % (name, x.number, number))
        expect(x.containing_type.full_name == extendee,
               "extension %s extends %s, want %s" % (name, x.containing_type.full_name, extendee))
        expect(x.type == D.FieldDescriptor.TYPE_BOOL, "extension %s is not bool" % name)

    # Every secrets map is marked csi_secret, in every message, nested or not.
    secret_ext = fd.extensions_by_name.get("csi_secret")
    alpha_field = fd.extensions_by_name.get("alpha_field")

    def walk(md):
        yield md
        for n in md.nested_types:
            yield from walk(n)

    n_secrets = 0
    for top in fd.message_types_by_name.values():
        for md in walk(top):
            for f in md.fields:
                if f.name == "secrets" and secret_ext is not None:
                    n_secrets += 1
                    opts = f.GetOptions()
                    expect(opts.HasExtension(secret_ext) and opts.Extensions[secret_ext],
                           "%s.secrets lacks (csi_secret) = true" % md.full_name)
    expect(n_secrets == 19, "%d secrets fields, want 19" % n_secrets)
    if alpha_field is not None:
        f = msg("NodeExpandVolumeRequest").fields_by_name["secrets"]
        expect(f.GetOptions().Extensions[alpha_field],
               "NodeExpandVolumeRequest.secrets lacks (alpha_field) = true")
    alpha_service = fd.extensions_by_name.get("alpha_service")
    if alpha_service is not None and "SnapshotMetadata" in fd.services_by_name:
        so = fd.services_by_name["SnapshotMetadata"].GetOptions()
        expect(so.Extensions[alpha_service], "SnapshotMetadata lacks (alpha_service) = true")

    n_top = len(fd.message_types_by_name)
    expect(n_top == TOP_LEVEL_MESSAGES, "%d top-level messages, want %d" % (n_top, TOP_LEVEL_MESSAGES))
    expect(sorted(fd.enum_types_by_name) == ["BlockMetadataType"],
           "top-level enums %s" % sorted(fd.enum_types_by_name))
    for m in ABSENT_MESSAGES:
        expect(m not in fd.message_types_by_name, "v1.13 message %s present" % m)
    for e in ABSENT_ENUMS:
        expect(e not in fd.enum_types_by_name, "v1.13 enum %s present" % e)

    if bad:
        for b in bad:
            print("MISMATCH: " + b)
        print("check_proto: %d of %d checks failed" % (len(bad), checked))
        return 1
    print("check_proto: all %d checks passed (%d fields, %d enums, %d services)"
          % (checked, len(FIELDS), len(ENUMS), len(SERVICES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
