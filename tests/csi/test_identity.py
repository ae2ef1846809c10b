#!/usr/bin/python3
"""CSI: Identity, capabilities, the socket, node info, GetCapacity, volume
basics (create idempotency, validate), and UNIMPLEMENTED for what the agent
does not serve."""
import os
import re
import stat
import subprocess

import grpc

from csilib import (AM, DRIVER, PIDFILE, MiB, STATE_ROOT, TOPOLOGY_KEY, Agent, AgentTest, Code, block_cap,
                    log, main, mount_cap, pb)

VOL_ID = re.compile(r"^vol-[0-9a-f]{32}$")
CCAP = pb.ControllerServiceCapability.RPC
NCAP = pb.NodeServiceCapability.RPC
PCAP = pb.PluginCapability.Service


class Identity(AgentTest):
    @classmethod
    def setUpClass(cls):
        cls.agent = Agent("identity", node_id="node-identity-1").start()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def test_plugin_info(self):
        r = self.agent.identity.GetPluginInfo(pb.GetPluginInfoRequest(), timeout=10)
        self.assertEqual(r.name, DRIVER)
        self.assertTrue(r.vendor_version, "vendor_version is empty")

    def test_probe(self):
        r = self.agent.identity.Probe(pb.ProbeRequest(), timeout=10)
        self.assertTrue(not r.HasField("ready") or r.ready.value, "Probe: not ready")

    def test_plugin_capabilities(self):
        r = self.agent.identity.GetPluginCapabilities(pb.GetPluginCapabilitiesRequest(), timeout=10)
        got = sorted(PCAP.Type.Name(c.service.type) for c in r.capabilities if c.HasField("service"))
        self.assertEqual(got, sorted(["CONTROLLER_SERVICE", "VOLUME_ACCESSIBILITY_CONSTRAINTS",
                                      "SNAPSHOT_METADATA_SERVICE"]))
        self.assertFalse([c for c in r.capabilities if c.HasField("volume_expansion")],
                         "volume expansion advertised but not served")

    def test_controller_capabilities(self):
        r = self.agent.controller.ControllerGetCapabilities(pb.ControllerGetCapabilitiesRequest(), timeout=10)
        got = sorted(CCAP.Type.Name(c.rpc.type) for c in r.capabilities)
        self.assertEqual(got, sorted(["CREATE_DELETE_VOLUME", "CREATE_DELETE_SNAPSHOT", "LIST_SNAPSHOTS",
                                      "CLONE_VOLUME", "GET_CAPACITY", "SINGLE_NODE_MULTI_WRITER"]))

    def test_node_capabilities(self):
        r = self.agent.node.NodeGetCapabilities(pb.NodeGetCapabilitiesRequest(), timeout=10)
        got = {NCAP.Type.Name(c.rpc.type) for c in r.capabilities}
        # GET_VOLUME_STATS is served; SINGLE_NODE_MULTI_WRITER must be on both
        # sides when the controller advertises it (the spec); VOLUME_CONDITION
        # may be (test_mount checks NodeGetVolumeStats then carries one).
        # Nothing that is not served: no staging, no expansion.
        self.assertTrue({"GET_VOLUME_STATS", "SINGLE_NODE_MULTI_WRITER"} <= got, sorted(got))
        self.assertTrue(got <= {"GET_VOLUME_STATS", "SINGLE_NODE_MULTI_WRITER", "VOLUME_CONDITION"}, sorted(got))

    def test_node_info(self):
        r = self.agent.node.NodeGetInfo(pb.NodeGetInfoRequest(), timeout=10)
        self.assertEqual(r.node_id, "node-identity-1")
        self.assertEqual(dict(r.accessible_topology.segments), {TOPOLOGY_KEY: "node-identity-1"})
        self.assertGreaterEqual(r.max_volumes_per_node, 0)

    def test_socket_mode(self):
        st = os.stat(self.agent.sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode), "%s is not a socket" % self.agent.sock)
        mode = stat.S_IMODE(st.st_mode)
        self.assertEqual(mode & ~0o660, 0, "socket mode %04o is wider than 0660" % mode)
        self.assertEqual(mode & 0o600, 0o600, "socket mode %04o: the owner cannot use it" % mode)

    def test_get_capacity(self):
        r = self.agent.controller.GetCapacity(pb.GetCapacityRequest(volume_capabilities=[block_cap()]),
                                              timeout=10)
        st = os.statvfs(STATE_ROOT)
        total = st.f_blocks * st.f_frsize
        self.assertGreater(r.available_capacity, 0, "GetCapacity: no capacity on an empty 4 GiB XFS")
        self.assertLessEqual(r.available_capacity, total,
                             "GetCapacity: %d bytes available on a %d byte filesystem" %
                             (r.available_capacity, total))

    def test_create_volume_basics(self):
        a = self.agent
        v = a.create_volume("pvc-identity-basics", 64 * MiB)
        self.assertRegex(v.volume_id, VOL_ID)
        self.assertGreaterEqual(v.capacity_bytes, 64 * MiB)
        self.assertIn({TOPOLOGY_KEY: "node-identity-1"}, [dict(t.segments) for t in v.accessible_topology])
        self.assertTrue(os.path.exists(a.vol_img(v.volume_id)), "no image %s" % a.vol_img(v.volume_id))
        # Sparse: a fresh volume takes (almost) no space.
        self.assertLess(os.stat(a.vol_img(v.volume_id)).st_blocks * 512, 4 * MiB, "the image is not sparse")
        # Idempotent: the same name and size is the same volume.
        v2 = a.create_volume("pvc-identity-basics", 64 * MiB)
        self.assertEqual(v2.volume_id, v.volume_id)
        # The same name with another size is a conflict.
        self.assertCode(Code.ALREADY_EXISTS, a.controller.CreateVolume,
                        pb.CreateVolumeRequest(name="pvc-identity-basics",
                                               capacity_range=pb.CapacityRange(required_bytes=128 * MiB),
                                               volume_capabilities=[block_cap()]),
                        "CreateVolume same name, other size")
        # Another name is another volume.
        v3 = a.create_volume("pvc-identity-basics-2", 64 * MiB, cap=mount_cap("ext4"))
        self.assertNotEqual(v3.volume_id, v.volume_id)

        vv = a.controller.ValidateVolumeCapabilities(
            pb.ValidateVolumeCapabilitiesRequest(volume_id=v.volume_id, volume_capabilities=[block_cap()]),
            timeout=10)
        self.assertTrue(vv.HasField("confirmed"), "block SINGLE_NODE_WRITER not confirmed: %s" % vv.message)
        vv = a.controller.ValidateVolumeCapabilities(
            pb.ValidateVolumeCapabilitiesRequest(volume_id=v.volume_id,
                                                 volume_capabilities=[block_cap(AM.SINGLE_NODE_MULTI_WRITER)]),
            timeout=10)
        self.assertTrue(vv.HasField("confirmed"), "SINGLE_NODE_MULTI_WRITER is advertised but not confirmed")
        vv = a.controller.ValidateVolumeCapabilities(
            pb.ValidateVolumeCapabilitiesRequest(volume_id=v.volume_id,
                                                 volume_capabilities=[block_cap(AM.MULTI_NODE_MULTI_WRITER)]),
            timeout=10)
        self.assertFalse(vv.HasField("confirmed"), "a node-local volume confirmed MULTI_NODE_MULTI_WRITER")
        self.assertTrue(vv.message, "an unconfirmed capability without a message")

        for vid in (v.volume_id, v3.volume_id):
            a.delete_volume(vid)
            a.delete_volume(vid)   # idempotent
            self.assertFalse(os.path.exists(a.vol_img(vid)), "image of deleted %s still there" % vid)
        self.assertCode(Code.NOT_FOUND, a.controller.ValidateVolumeCapabilities,
                        pb.ValidateVolumeCapabilitiesRequest(volume_id=v.volume_id,
                                                             volume_capabilities=[block_cap()]),
                        "ValidateVolumeCapabilities of a deleted volume")

    def test_capacity_range(self):
        """capacity_range honoured: at least required_bytes, at most limit_bytes."""
        a = self.agent
        C = a.controller
        req = 5 * MiB + 1
        r = C.CreateVolume(pb.CreateVolumeRequest(name="pvc-identity-odd", volume_capabilities=[block_cap()],
                                                  capacity_range=pb.CapacityRange(required_bytes=req)), timeout=30)
        self.assertGreaterEqual(r.volume.capacity_bytes, req)
        self.assertEqual(os.stat(a.vol_img(r.volume.volume_id)).st_size, r.volume.capacity_bytes)
        a.delete_volume(r.volume.volume_id)
        # A limit that leaves room for the agent's rounding, one that does not.
        for limit in (8 * MiB, req):
            try:
                r = C.CreateVolume(pb.CreateVolumeRequest(
                    name="pvc-identity-limit-%d" % limit, volume_capabilities=[block_cap()],
                    capacity_range=pb.CapacityRange(required_bytes=req, limit_bytes=limit)), timeout=30)
            except grpc.RpcError as e:
                self.assertEqual(e.code(), Code.OUT_OF_RANGE, e.details())
                self.assertEqual(limit, req, "refused a range with room: %s" % e.details())
                continue
            self.assertGreaterEqual(r.volume.capacity_bytes, req)
            self.assertLessEqual(r.volume.capacity_bytes, limit, "capacity above limit_bytes")
            a.delete_volume(r.volume.volume_id)
        # limit_bytes below required_bytes: no volume can satisfy it.
        try:
            r = C.CreateVolume(pb.CreateVolumeRequest(
                name="pvc-identity-inverted", volume_capabilities=[block_cap()],
                capacity_range=pb.CapacityRange(required_bytes=8 * MiB, limit_bytes=4 * MiB)), timeout=30)
            self.fail("CreateVolume with limit_bytes below required_bytes made %s" % r.volume.volume_id)
        except grpc.RpcError as e:
            self.assertIn(e.code(), (Code.OUT_OF_RANGE, Code.INVALID_ARGUMENT), e.details())

    def test_default_capacity(self):
        # No capacity_range: the plugin chooses (the agent's default), never zero.
        a = self.agent
        r = a.controller.CreateVolume(pb.CreateVolumeRequest(name="pvc-identity-nosize",
                                                             volume_capabilities=[block_cap()]), timeout=30)
        self.assertGreater(r.volume.capacity_bytes, 0)
        self.assertEqual(os.stat(a.vol_img(r.volume.volume_id)).st_size, r.volume.capacity_bytes)
        a.delete_volume(r.volume.volume_id)

    def test_unimplemented(self):
        a = self.agent
        vid = "vol-" + "0" * 32
        calls = [
            (a.controller.ControllerPublishVolume,
             pb.ControllerPublishVolumeRequest(volume_id=vid, node_id="n", volume_capability=block_cap())),
            (a.controller.ControllerUnpublishVolume, pb.ControllerUnpublishVolumeRequest(volume_id=vid)),
            (a.controller.ListVolumes, pb.ListVolumesRequest()),
            (a.controller.GetSnapshot, pb.GetSnapshotRequest(snapshot_id="snap-" + "0" * 32)),
            (a.controller.ControllerExpandVolume, pb.ControllerExpandVolumeRequest(volume_id=vid)),
            (a.controller.ControllerGetVolume, pb.ControllerGetVolumeRequest(volume_id=vid)),
            (a.controller.ControllerModifyVolume, pb.ControllerModifyVolumeRequest(volume_id=vid)),
            (a.node.NodeStageVolume, pb.NodeStageVolumeRequest(volume_id=vid, staging_target_path="/x",
                                                                volume_capability=block_cap())),
            (a.node.NodeUnstageVolume, pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path="/x")),
            (a.node.NodeExpandVolume, pb.NodeExpandVolumeRequest(volume_id=vid, volume_path="/x")),
            (a.group.GroupControllerGetCapabilities, pb.GroupControllerGetCapabilitiesRequest()),
            (a.group.CreateVolumeGroupSnapshot, pb.CreateVolumeGroupSnapshotRequest(name="g")),
        ]
        for fn, req in calls:
            with self.subTest(method=type(req).__name__):
                self.assertCode(Code.UNIMPLEMENTED, fn, req, type(req).__name__[:-len("Request")])
        # Methods and services that are not in the proto at all.
        for path in ("/csi.v1.Identity/NoSuchMethod", "/csi.v1.Controller/ListVolumesX",
                     "/csi.v9.Nothing/Probe", "/grpc.health.v1.Health/Check"):
            with self.subTest(path=path):
                raw = a.channel.unary_unary(path, request_serializer=lambda b: b,
                                            response_deserializer=lambda b: b)
                self.assertCode(Code.UNIMPLEMENTED, raw, b"", path)
        # The server still serves after all that.
        a.identity.Probe(pb.ProbeRequest(), timeout=10)

    def test_second_agent_same_socket(self):
        # Another agent on a socket that answers: it must refuse to start
        # (exit non-zero), and the first one keeps serving.
        a = self.agent
        b = Agent("identity-second", node_id="node-identity-2")
        args = list(b.args)
        args[args.index("--endpoint") + 1] = "unix://" + a.sock
        with open(b.log_path, "a") as lf:
            p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT)
        with open(PIDFILE, "a") as f:
            f.write("%d %s\n" % (p.pid, a.sock))
        try:
            rc = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertIsNotNone(rc, "a second agent on a socket in use is still running after 30 s")
        self.assertNotEqual(rc, 0, "a second agent on a socket in use exited 0")
        log("second agent: exit %d: %s" % (rc, b.log_tail(3).replace("\n", " | ")))
        r = a.node.NodeGetInfo(pb.NodeGetInfoRequest(), timeout=10)
        self.assertEqual(r.node_id, "node-identity-1", "the socket was taken over by the second agent")
        self.assertTrue(os.path.exists(a.sock), "the first agent's socket was removed")

    def test_bad_endpoints(self):
        # A bad --endpoint: exactly one line on stderr, ferry's own, echoing
        # what was typed; exit 2 for bad usage, 1 when the socket cannot be
        # had; nothing touched (the state directory is not even made).
        # gRPC's own messages show only with --debug.
        from csilib import FERRY, KUBELET_ROOT, WORK
        long_path = "/tmp/" + "x" * 110 + ".sock"
        cases = [
            ("unix:///nonexistent-ferry-dir/sub/csi.sock", 1, "/nonexistent-ferry-dir/sub"),
            (os.path.join(WORK, "not-a-dir-file") + "/csi.sock", 1, "not a directory"),
            ("tcp://127.0.0.1:10000", 2, "only unix sockets"),
            ("dns:///localhost:10000", 2, "only unix sockets"),
            ("unix://relative/csi.sock", 2, "not an absolute"),
            ("unix://" + long_path, 2, "at most 107 bytes"),
            ("", 2, "empty"),
        ]
        with open(os.path.join(WORK, "not-a-dir-file"), "w") as f:
            f.write("a file, not a directory\n")

        def run(endpoint, *extra):
            state = os.path.join(STATE_ROOT, "bad-endpoint-state")
            args = [FERRY, "agent", "--endpoint", endpoint, "--node-id", "node-bad-endpoint",
                    "--state-dir", state, "--kubelet-dir", KUBELET_ROOT] + list(extra)
            env = dict(os.environ)
            env.pop("CSI_ENDPOINT", None)
            env.pop("GRPC_VERBOSITY", None)
            p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, timeout=60)
            made = os.path.exists(state)
            subprocess.run(["rm", "-rf", state], check=True)
            return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), made

        for endpoint, want_rc, why in cases:
            with self.subTest(endpoint=endpoint):
                rc, out, err, made = run(endpoint)
                lines = err.splitlines()
                log("--endpoint %r: exit %d: %s" % (endpoint, rc, err.strip()[:200]))
                self.assertEqual(rc, want_rc, "--endpoint %r: exit status (stderr: %s)" % (endpoint, err))
                self.assertEqual(len(lines), 1, "--endpoint %r: want exactly one line on stderr, got:\n%s"
                                 % (endpoint, err))
                self.assertTrue(lines[0].startswith("ferry agent: "), lines[0])
                self.assertIn(endpoint, lines[0], "the line does not echo what was typed")
                self.assertIn(why, lines[0])
                self.assertEqual(out, "", "--endpoint %r: something on stdout" % endpoint)
                self.assertFalse(made, "--endpoint %r: the state directory was made" % endpoint)
        # With --debug, gRPC's own reason for the failed bind is in the log
        # (as debug lines), and ferry's one line still ends it.
        rc, _, err, _ = run(cases[0][0], "--debug")
        self.assertEqual(rc, 1)
        lines = err.splitlines()
        self.assertTrue([ln for ln in lines if " debug grpc " in ln], "--debug: no gRPC line:\n" + err)
        self.assertTrue(lines[-1].startswith("ferry agent: endpoint "), err)

    def test_garbage_request(self):
        # A request body that is not a valid protobuf message: INVALID_ARGUMENT
        # (or INTERNAL from the decoder), never a crash.
        a = self.agent
        raw = a.channel.unary_unary("/csi.v1.Controller/CreateVolume", request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
        try:
            raw(b"\xff\xff\xff\xff\x0f\x0a\xff", timeout=10)
            self.fail("a garbage CreateVolume request succeeded")
        except grpc.RpcError as e:
            self.assertIn(e.code(), (Code.INVALID_ARGUMENT, Code.INTERNAL), e.details())
        a.identity.Probe(pb.ProbeRequest(), timeout=10)
        self.assertTrue(a.running())

    def test_zz_sigterm(self):
        # Last: SIGTERM stops the agent cleanly (exit 0) and promptly, and
        # the log (with LeakSanitizer's exit report in ASan builds) is clean.
        a = self.agent
        rc, took = a.stop()
        self.assertEqual(rc, 0, "agent exit status after SIGTERM; log tail:\n" + a.log_tail())
        self.assertLess(took, 5.0, "SIGTERM took %.1fs to stop an idle agent" % took)
        self.assertAgentClean(a)


if __name__ == "__main__":
    main()
