#!/usr/bin/python3
"""The container image (deploy/Containerfile) running the agent as a
DaemonSet's node plugin would: privileged, with a host directory for the
socket at /csi, one for the state at /var/lib/ferry (on the XFS with reflink
that run.sh-style scenes make), the host's /dev, a host directory holding a
file:// repository at /repos, and the kubelet directory at its own path with
rshared propagation, so that the mounts the agent makes inside the container
appear on the host, as kubelet needs them to.

Driven from outside with the CSI client: Probe and identity, then for ext4
and XFS (mkfs in the container): CreateVolume, NodePublishVolume with mount
access, data written from the host, CreateSnapshot to the repository with a
VolumeSnapshotClass-like parameter set and a password secret, ready_to_use,
CreateVolume from the snapshot, published read-only, `cmp` with what was
written; `ferry restore` by the host's build from the repository equals the
snapshot's clone byte for byte and mounts with the data; last, `podman stop`
ends the agent with SIGTERM within the grace period, exit status 0.

tests/integration/t_image.sh builds the image and sets the scene:
  FERRY_IMAGE            the image to run
  FERRY_IMAGE_VERSION    the version it must report
  FERRY_IMAGE_CONTAINER  the container's name (t_image.sh removes it at exit)
  FERRY_IMAGE_CSI_DIR    host directory mounted at /csi
  FERRY_IMAGE_REPOS      host directory mounted at /repos
  FERRY_IMAGE_RUN_FLAGS  podman flags this host needs (runtime, rlimits), space-separated
and csilib's FERRY (the host's build), CSI_STUBS, CSI_STATE_ROOT,
CSI_KUBELET_ROOT (a shared bind mount), CSI_WORK."""
import json
import os
import subprocess
import time
import uuid

import grpc

from csilib import (P_CREATE, P_REPO, P_VS_NAME, P_VS_NS, P_VSC_NAME, PASSWORD, WORK, MiB, Agent,
                    AgentTest, ferry, log, main, mount_cap, mounts_at, pb, prand, repo_snapshot_of)

IMAGE = os.environ["FERRY_IMAGE"]
VERSION = os.environ["FERRY_IMAGE_VERSION"]
CONTAINER = os.environ["FERRY_IMAGE_CONTAINER"]
CSI_DIR = os.environ["FERRY_IMAGE_CSI_DIR"]
REPOS = os.environ["FERRY_IMAGE_REPOS"]
RUN_FLAGS = os.environ.get("FERRY_IMAGE_RUN_FLAGS", "").split()
NODE = "node-image"
GRACE = 30          # seconds: Kubernetes' default terminationGracePeriodSeconds


def podman(*args, check=True, timeout=120):
    p = subprocess.run(["podman"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("podman %s: exit %d: %s" % (" ".join(args), p.returncode,
                                                         p.stderr.decode(errors="replace")[-2000:]))
    return p


class ContainerAgent(Agent):
    """`ferry agent` in the image, as the DaemonSet runs it; csilib's calls
    work unchanged: the socket is in the host directory mounted at /csi and
    publish targets lie under the kubelet directory, the same path inside
    and outside."""

    def __init__(self):
        super().__init__("image", node_id=NODE)
        self.sock = os.path.join(CSI_DIR, "csi.sock")
        # The pod spec's securityContext and volumes (docs/deploy-image.md).
        self.run_args = (["run", "-d", "--name", CONTAINER] + RUN_FLAGS + [
            "--privileged",                              # loop devices, mount(2), FIFREEZE
            "--read-only", "--read-only-tmpfs=false",    # readOnlyRootFilesystem, no tmpfs added
            "--network=none",                            # file:// needs none
            "-e", "NODE_ID=" + NODE,                     # spec.nodeName in a DaemonSet
            "-v", CSI_DIR + ":/csi",
            "-v", self.state + ":/var/lib/ferry",
            "-v", "/dev:/dev",
            "-v", REPOS + ":/repos",
            "--mount", "type=bind,source=%s,destination=%s,bind-propagation=rshared"
            % (os.environ["CSI_KUBELET_ROOT"], os.environ["CSI_KUBELET_ROOT"]),
            IMAGE, "agent", "--kubelet-dir", self.kubelet, "--debug"])
        self.cid = None

    def start(self, timeout=120):
        assert self.cid is None, "container already started"
        self.starts += 1
        self.cid = podman(*self.run_args).stdout.decode().strip()
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if not self.running():
                raise AssertionError("the agent's container exited during start-up (%s); log tail:\n%s"
                                     % (self.state_of(), self.log_tail()))
            if os.path.exists(self.sock):
                self._connect()
                try:
                    r = self.identity.Probe(pb.ProbeRequest(), timeout=2)
                    if not r.HasField("ready") or r.ready.value:
                        return self
                    last = "Probe: ready=false"
                except grpc.RpcError as e:
                    last = "Probe: %s %s" % (e.code().name, e.details())
            if time.monotonic() > deadline:
                raise AssertionError("the agent in the container not ready within %ds (%s); log tail:\n%s"
                                     % (timeout, last, self.log_tail()))
            time.sleep(0.1)

    def state_of(self):
        p = podman("inspect", "--format", "{{json .State}}", CONTAINER, check=False)
        return json.loads(p.stdout.decode()) if p.returncode == 0 else {}

    def running(self):
        return bool(self.state_of().get("Running"))

    def stop(self, grace=GRACE):
        """`podman stop -t GRACE`: SIGTERM (the image's STOPSIGNAL), SIGKILL
        after GRACE seconds.  Returns (exit status, seconds taken)."""
        self._disconnect()
        t0 = time.monotonic()
        podman("stop", "-t", str(grace), CONTAINER, timeout=grace + 60)
        took = time.monotonic() - t0
        return self.state_of().get("ExitCode"), took

    def kill(self):
        self._disconnect()
        podman("kill", CONTAINER, check=False)

    def log_text(self):
        p = podman("logs", CONTAINER, check=False)
        return (p.stdout + p.stderr).decode("utf-8", "replace")


def cmp(a, b):
    p = subprocess.run(["cmp", a, b], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p.returncode, p.stdout.decode(errors="replace").strip()


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class Image(AgentTest):
    @classmethod
    def setUpClass(cls):
        cls.agent = ContainerAgent().start()

    @classmethod
    def tearDownClass(cls):
        if cls.agent.running():
            cls.agent.kill()

    def test_1_identity(self):
        a = self.agent
        info = a.identity.GetPluginInfo(pb.GetPluginInfoRequest(), timeout=10)
        self.assertEqual(info.name, "ferry.csi.dev")
        self.assertEqual(info.vendor_version, VERSION, "the image's agent reports another version")
        self.assertEqual(a.node.NodeGetInfo(pb.NodeGetInfoRequest(), timeout=10).node_id, NODE,
                         "NODE_ID from the environment, as a DaemonSet sets it")
        st = os.stat(a.sock)
        self.assertEqual(st.st_mode & 0o777, 0o660, "socket mode as seen from the host")

    def flow(self, fs, size):
        a = self.agent
        name = "pvc-image-" + fs
        cap = mount_cap(fs)
        v = a.create_volume(name, size, cap=cap)
        target = a.publish(v.volume_id, a.mount_target(name), cap=cap)
        m = mounts_at(target)
        self.assertTrue(m, "%s: the mount made in the container is not seen on the host "
                        "(mount propagation)" % target)
        self.assertEqual(m[-1][1], fs, "file system type of the published volume")

        # Data written from the host, through the propagated mount.
        files = {"data.bin": prand(5 * MiB + 4321, "image-%s-data" % fs),
                 "dir/small.txt": ("written from the host onto %s\n" % fs).encode() * 100}
        for rel, data in files.items():
            os.makedirs(os.path.dirname(os.path.join(target, rel)), exist_ok=True)
            write_file(os.path.join(target, rel), data)

        # A VolumeSnapshotClass's parameters and secret; the snapshotter's
        # --extra-create-metadata adds the csi.storage.k8s.io ones.
        url_in = "file:///repos/" + fs
        url_host = "file://" + os.path.join(REPOS, fs)
        snap_name = "snapshot-" + str(uuid.uuid4())
        params = {P_REPO: url_in, P_CREATE: "true",
                  P_VS_NAME: "backup-" + fs, P_VS_NS: "default", P_VSC_NAME: "snapcontent-" + fs}
        s = a.create_snapshot(v.volume_id, snap_name, params, {"password": PASSWORD})
        s = a.wait_ready(s.snapshot_id, timeout=300)
        log("%s: snapshot %s ready in the repository" % (fs, s.snapshot_id))

        # A volume from the snapshot, published read-only: the same files.
        c = a.create_volume(name + "-restored", size, cap=cap, snapshot=s.snapshot_id)
        t2 = a.publish(c.volume_id, a.mount_target(name + "-restored"), cap=cap, readonly=True)
        self.assertTrue(mounts_at(t2), "the restored volume's mount is not seen on the host")
        for rel in files:
            rc, out = cmp(os.path.join(target, rel), os.path.join(t2, rel))
            self.assertEqual(rc, 0, "%s: %s differs in the volume restored from the snapshot: %s" % (fs, rel, out))

        # The host's own build restores it from the repository the image's
        # agent wrote: the snapshot's clone, byte for byte, and it mounts.
        rs = repo_snapshot_of(url_host, s.snapshot_id)
        out = os.path.join(WORK, "restored-%s.img" % fs)
        ferry("restore", "--repo", url_host, rs["id"], out)
        clone = os.path.join(a.state, "snapshots", s.snapshot_id + ".img")
        rc, msg = cmp(clone, out)
        self.assertEqual(rc, 0, "%s: `ferry restore` on the host differs from the snapshot: %s" % (fs, msg))
        mnt = os.path.join(WORK, "mnt-" + fs)
        os.makedirs(mnt, exist_ok=True)
        # XFS: nouuid, as the source volume (the same UUID) is mounted on the
        # host too; norecovery, as a frozen XFS leaves its log marked dirty
        # (covered: nothing to replay) and a read-only loop cannot replay it.
        opts = "ro,loop,nouuid,norecovery" if fs == "xfs" else "ro,loop"
        subprocess.run(["mount", "-t", fs, "-o", opts, out, mnt], check=True)
        try:
            for rel in files:
                rc, msg = cmp(os.path.join(target, rel), os.path.join(mnt, rel))
                self.assertEqual(rc, 0, "%s: %s differs in the host's restore: %s" % (fs, rel, msg))
        finally:
            subprocess.run(["umount", mnt], check=True)
        os.unlink(out)

        for vid, t in ((c.volume_id, t2), (v.volume_id, target)):
            a.unpublish(vid, t)
            self.assertFalse(mounts_at(t), "still mounted on the host after NodeUnpublishVolume")
        a.delete_volume(c.volume_id)
        log("%s: volume, snapshot, restore in the container and on the host agree" % fs)

    def test_2_ext4(self):
        self.flow("ext4", 64 * MiB)

    def test_3_xfs(self):
        self.flow("xfs", 320 * MiB)    # mkfs.xfs refuses below 300 MB

    def test_9_stop(self):
        """podman stop: SIGTERM to the agent (PID 1 in the container), which
        stops cleanly well within the grace period and exits 0."""
        a = self.agent
        rc, took = a.stop(GRACE)
        tail = a.log_tail(5)
        self.assertEqual(rc, 0, "exit status after SIGTERM (137 would be podman's SIGKILL at the end of the "
                         "grace period); log tail:\n" + tail)
        self.assertLess(took, GRACE, "the stop took the whole grace period")
        lines = [ln for ln in a.log_text().splitlines() if ln.strip()]
        self.assertTrue(any("Terminated: stopping" in ln for ln in lines[-10:]),
                        "no 'stopping' line at the end of the log:\n" + tail)
        self.assertIn("stopped", lines[-1], "the agent's last log line:\n" + tail)
        log("stopped by SIGTERM in %.1f s (grace %d s), exit 0; last line: %s" % (took, GRACE, lines[-1]))


if __name__ == "__main__":
    main()
