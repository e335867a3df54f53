"""The project's own CRI (runtime.v1) client for the CRI test bed (engine_cri.py): gRPC over containerd's unix
socket with grpcio; the messages are protobuf classes built at run time (google.protobuf descriptor_pb2) from the
field lists below, written here by hand from the published runtime.v1 API's field numbers (only the messages and
fields these tests use; unknown fields in answers are kept and ignored).

    c = CRIClient("/tmp/.../containerd.sock")
    c.call("Version", version="v1")                  -> a VersionResponse message
    c.call("RunPodSandbox", config={...}, runtime_handler="ocirun")
    c.call("ListImages", service="ImageService")
Requests are given as keyword arguments (nested messages as dicts, maps as dicts, enums as numbers); answers are
messages (use .field or to_dict()). A failed call raises CRIError with the gRPC status code and the server's text.
"""
import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

PACKAGE = "runtime.v1"

# type names: "string", "bool", "int64", "int32", "uint32", "uint64", "bytes", "enum" (as int32 on the wire: an
# open proto3 enum is varint-encoded like int32), a message name, or "map<string,string>". Prefix "*" = repeated.
MESSAGES = {
    "VersionRequest": [("version", 1, "string")],
    "VersionResponse": [("version", 1, "string"), ("runtime_name", 2, "string"), ("runtime_version", 3, "string"),
                        ("runtime_api_version", 4, "string")],
    "DNSConfig": [("servers", 1, "*string"), ("searches", 2, "*string"), ("options", 3, "*string")],
    "IDMapping": [("host_id", 1, "uint32"), ("container_id", 2, "uint32"), ("length", 3, "uint32")],
    "Mount": [("container_path", 1, "string"), ("host_path", 2, "string"), ("readonly", 3, "bool"),
              ("selinux_relabel", 4, "bool"), ("propagation", 5, "enum")],
    "NamespaceOption": [("network", 1, "enum"), ("pid", 2, "enum"), ("ipc", 3, "enum"), ("target_id", 4, "string")],
    "Int64Value": [("value", 1, "int64")],
    "SecurityProfile": [("profile_type", 1, "enum"), ("localhost_ref", 2, "string")],
    "LinuxSandboxSecurityContext": [
        ("namespace_options", 1, "NamespaceOption"), ("run_as_user", 3, "Int64Value"),
        ("readonly_rootfs", 4, "bool"), ("supplemental_groups", 5, "*int64"), ("privileged", 6, "bool"),
        ("run_as_group", 8, "Int64Value"), ("seccomp", 9, "SecurityProfile")],
    "LinuxContainerResources": [
        ("cpu_period", 1, "int64"), ("cpu_quota", 2, "int64"), ("cpu_shares", 3, "int64"),
        ("memory_limit_in_bytes", 4, "int64"), ("oom_score_adj", 5, "int64"), ("cpuset_cpus", 6, "string"),
        ("cpuset_mems", 7, "string"), ("hugepage_limits", 8, "*HugepageLimit"),
        ("memory_swap_limit_in_bytes", 10, "int64")],
    "HugepageLimit": [("page_size", 1, "string"), ("limit", 2, "uint64")],
    "LinuxPodSandboxConfig": [("cgroup_parent", 1, "string"),
                              ("security_context", 2, "LinuxSandboxSecurityContext"),
                              ("sysctls", 3, "map<string,string>")],
    "PodSandboxMetadata": [("name", 1, "string"), ("uid", 2, "string"), ("namespace", 3, "string"),
                           ("attempt", 4, "uint32")],
    "PodSandboxConfig": [("metadata", 1, "PodSandboxMetadata"), ("hostname", 2, "string"),
                         ("log_directory", 3, "string"), ("dns_config", 4, "DNSConfig"),
                         ("labels", 6, "map<string,string>"), ("annotations", 7, "map<string,string>"),
                         ("linux", 8, "LinuxPodSandboxConfig")],
    "RunPodSandboxRequest": [("config", 1, "PodSandboxConfig"), ("runtime_handler", 2, "string")],
    "RunPodSandboxResponse": [("pod_sandbox_id", 1, "string")],
    "StopPodSandboxRequest": [("pod_sandbox_id", 1, "string")],
    "StopPodSandboxResponse": [],
    "RemovePodSandboxRequest": [("pod_sandbox_id", 1, "string")],
    "RemovePodSandboxResponse": [],
    "PodSandboxStatusRequest": [("pod_sandbox_id", 1, "string"), ("verbose", 2, "bool")],
    "PodSandboxStatus": [("id", 1, "string"), ("metadata", 2, "PodSandboxMetadata"), ("state", 3, "enum"),
                         ("created_at", 4, "int64"), ("runtime_handler", 9, "string")],
    "PodSandboxStatusResponse": [("status", 1, "PodSandboxStatus"), ("info", 2, "map<string,string>")],
    "PodSandboxFilter": [("id", 1, "string")],
    "ListPodSandboxRequest": [("filter", 1, "PodSandboxFilter")],
    "PodSandbox": [("id", 1, "string"), ("metadata", 2, "PodSandboxMetadata"), ("state", 3, "enum"),
                   ("runtime_handler", 7, "string")],
    "ListPodSandboxResponse": [("items", 1, "*PodSandbox")],
    "ImageSpec": [("image", 1, "string"), ("annotations", 2, "map<string,string>")],
    "KeyValue": [("key", 1, "string"), ("value", 2, "string")],
    "Capability": [("add_capabilities", 1, "*string"), ("drop_capabilities", 2, "*string")],
    "LinuxContainerSecurityContext": [
        ("capabilities", 1, "Capability"), ("privileged", 2, "bool"), ("namespace_options", 3, "NamespaceOption"),
        ("run_as_user", 5, "Int64Value"), ("run_as_username", 6, "string"), ("readonly_rootfs", 7, "bool"),
        ("supplemental_groups", 8, "*int64"), ("no_new_privs", 11, "bool"), ("run_as_group", 12, "Int64Value"),
        ("masked_paths", 13, "*string"), ("readonly_paths", 14, "*string"), ("seccomp", 15, "SecurityProfile")],
    "LinuxContainerConfig": [("resources", 1, "LinuxContainerResources"),
                             ("security_context", 2, "LinuxContainerSecurityContext")],
    "ContainerMetadata": [("name", 1, "string"), ("attempt", 2, "uint32")],
    "ContainerConfig": [("metadata", 1, "ContainerMetadata"), ("image", 2, "ImageSpec"), ("command", 3, "*string"),
                        ("args", 4, "*string"), ("working_dir", 5, "string"), ("envs", 6, "*KeyValue"),
                        ("mounts", 7, "*Mount"), ("labels", 9, "map<string,string>"),
                        ("annotations", 10, "map<string,string>"), ("log_path", 11, "string"),
                        ("stdin", 12, "bool"), ("stdin_once", 13, "bool"), ("tty", 14, "bool"),
                        ("linux", 15, "LinuxContainerConfig")],
    "CreateContainerRequest": [("pod_sandbox_id", 1, "string"), ("config", 2, "ContainerConfig"),
                               ("sandbox_config", 3, "PodSandboxConfig")],
    "CreateContainerResponse": [("container_id", 1, "string")],
    "StartContainerRequest": [("container_id", 1, "string")],
    "StartContainerResponse": [],
    "StopContainerRequest": [("container_id", 1, "string"), ("timeout", 2, "int64")],
    "StopContainerResponse": [],
    "RemoveContainerRequest": [("container_id", 1, "string")],
    "RemoveContainerResponse": [],
    "ContainerFilter": [("id", 1, "string"), ("pod_sandbox_id", 3, "string")],
    "ListContainersRequest": [("filter", 1, "ContainerFilter")],
    "Container": [("id", 1, "string"), ("pod_sandbox_id", 2, "string"), ("metadata", 3, "ContainerMetadata"),
                  ("image", 4, "ImageSpec"), ("image_ref", 5, "string"), ("state", 6, "enum")],
    "ListContainersResponse": [("containers", 1, "*Container")],
    "ContainerStatusRequest": [("container_id", 1, "string"), ("verbose", 2, "bool")],
    "ContainerStatus": [("id", 1, "string"), ("metadata", 2, "ContainerMetadata"), ("state", 3, "enum"),
                        ("created_at", 4, "int64"), ("started_at", 5, "int64"), ("finished_at", 6, "int64"),
                        ("exit_code", 7, "int32"), ("image", 8, "ImageSpec"), ("image_ref", 9, "string"),
                        ("reason", 10, "string"), ("message", 11, "string"), ("mounts", 14, "*Mount"),
                        ("log_path", 15, "string")],
    "ContainerStatusResponse": [("status", 1, "ContainerStatus"), ("info", 2, "map<string,string>")],
    "ExecSyncRequest": [("container_id", 1, "string"), ("cmd", 2, "*string"), ("timeout", 3, "int64")],
    "ExecSyncResponse": [("stdout", 1, "bytes"), ("stderr", 2, "bytes"), ("exit_code", 3, "int32")],
    "UInt64Value": [("value", 1, "uint64")],
    "ContainerAttributes": [("id", 1, "string"), ("metadata", 2, "ContainerMetadata")],
    "CpuUsage": [("timestamp", 1, "int64"), ("usage_core_nano_seconds", 2, "UInt64Value"),
                 ("usage_nano_cores", 3, "UInt64Value")],
    "MemoryUsage": [("timestamp", 1, "int64"), ("working_set_bytes", 2, "UInt64Value"),
                    ("available_bytes", 3, "UInt64Value"), ("usage_bytes", 4, "UInt64Value"),
                    ("rss_bytes", 5, "UInt64Value"), ("page_faults", 6, "UInt64Value"),
                    ("major_page_faults", 7, "UInt64Value")],
    "ContainerStats": [("attributes", 1, "ContainerAttributes"), ("cpu", 2, "CpuUsage"),
                       ("memory", 3, "MemoryUsage")],
    "ContainerStatsRequest": [("container_id", 1, "string")],
    "ContainerStatsResponse": [("stats", 1, "ContainerStats")],
    "UpdateContainerResourcesRequest": [("container_id", 1, "string"), ("linux", 2, "LinuxContainerResources")],
    "UpdateContainerResourcesResponse": [],
    "ReopenContainerLogRequest": [("container_id", 1, "string")],
    "ReopenContainerLogResponse": [],
    "ExecRequest": [("container_id", 1, "string"), ("cmd", 2, "*string"), ("tty", 3, "bool"), ("stdin", 4, "bool"),
                    ("stdout", 5, "bool"), ("stderr", 6, "bool")],
    "ExecResponse": [("url", 1, "string")],
    "AttachRequest": [("container_id", 1, "string"), ("stdin", 2, "bool"), ("tty", 3, "bool"), ("stdout", 4, "bool"),
                      ("stderr", 5, "bool")],
    "AttachResponse": [("url", 1, "string")],
    "ImageFilter": [("image", 1, "ImageSpec")],
    "ListImagesRequest": [("filter", 1, "ImageFilter")],
    "Image": [("id", 1, "string"), ("repo_tags", 2, "*string"), ("repo_digests", 3, "*string"),
              ("size", 4, "uint64")],
    "ListImagesResponse": [("images", 1, "*Image")],
    "ImageStatusRequest": [("image", 1, "ImageSpec"), ("verbose", 2, "bool")],
    "ImageStatusResponse": [("image", 1, "Image"), ("info", 2, "map<string,string>")],
}

# method -> (service, request, response)
METHODS = {m: ("RuntimeService", m + "Request", m + "Response") for m in (
    "Version", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus", "ListPodSandbox",
    "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "ListContainers", "ContainerStatus",
    "ExecSync", "ContainerStats", "UpdateContainerResources", "ReopenContainerLog", "Exec", "Attach")}
METHODS.update({m: ("ImageService", m + "Request", m + "Response") for m in ("ListImages", "ImageStatus")})

# enum values (runtime.v1)
POD, CONTAINER, NODE = 0, 1, 2                                                  # NamespaceMode
PROPAGATION_PRIVATE, PROPAGATION_HOST_TO_CONTAINER, PROPAGATION_BIDIRECTIONAL = 0, 1, 2  # MountPropagation
SANDBOX_READY, SANDBOX_NOTREADY = 0, 1                                          # PodSandboxState
CONTAINER_CREATED, CONTAINER_RUNNING, CONTAINER_EXITED, CONTAINER_UNKNOWN = 0, 1, 2, 3  # ContainerState
SECCOMP_RUNTIME_DEFAULT, SECCOMP_UNCONFINED, SECCOMP_LOCALHOST = 0, 1, 2          # SecurityProfile.ProfileType

_SCALARS = {
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "enum": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    "uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
}


def _camel(name):
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def _build():
    fdp = descriptor_pb2.FileDescriptorProto(name="ocirun_tests_cri_v1.proto", package=PACKAGE, syntax="proto3")
    F = descriptor_pb2.FieldDescriptorProto
    for mname, fields in MESSAGES.items():
        m = fdp.message_type.add(name=mname)
        for fname, num, ftype in fields:
            label = F.LABEL_OPTIONAL
            if ftype.startswith("*"):
                label, ftype = F.LABEL_REPEATED, ftype[1:]
            f = m.field.add(name=fname, number=num, label=label)
            if ftype == "map<string,string>":
                entry = m.nested_type.add(name=_camel(fname) + "Entry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING)
                entry.field.add(name="value", number=2, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING)
                f.label = F.LABEL_REPEATED
                f.type = F.TYPE_MESSAGE
                f.type_name = f".{PACKAGE}.{mname}.{entry.name}"
            elif ftype in _SCALARS:
                f.type = _SCALARS[ftype]
            else:
                f.type = F.TYPE_MESSAGE
                f.type_name = f".{PACKAGE}.{ftype}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    fd = pool.FindFileByName(fdp.name)
    return {name: message_factory.GetMessageClass(fd.message_types_by_name[name]) for name in MESSAGES}


CLASSES = _build()


def message(name, **fields):
    """A runtime.v1 message from keyword arguments (nested messages as dicts, lists for repeated fields)."""
    return json_format.ParseDict(fields, CLASSES[name]())


def to_dict(msg):
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


class CRIError(Exception):
    def __init__(self, method, code, details):
        self.method, self.code, self.details = method, code, details
        super().__init__(f"CRI {method}: {code.name if code else '?'}: {details}")


class CRIClient:
    def __init__(self, socket_path, timeout=30):
        self.target = "unix://" + socket_path
        self.timeout = timeout
        self.channel = grpc.insecure_channel(self.target, options=[("grpc.max_receive_message_length", 64 << 20)])
        self._stubs = {}

    def _stub(self, method):
        if method not in self._stubs:
            service, req, resp = METHODS[method]
            self._stubs[method] = self.channel.unary_unary(
                f"/{PACKAGE}.{service}/{method}", request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=CLASSES[resp].FromString)
        return self._stubs[method]

    def call(self, method, deadline=None, **fields):
        """One RPC; `fields` are the request's (e.g. timeout= of StopContainer); `deadline`: the gRPC call's, in
        seconds (default the client's)."""
        req = message(METHODS[method][1], **fields)
        try:
            return self._stub(method)(req, timeout=deadline or self.timeout)
        except grpc.RpcError as e:
            raise CRIError(method, e.code(), e.details()) from None

    def close(self):
        self.channel.close()


def stream(url, timeout=30, until=None):
    """Read an Exec/Attach streaming URL (containerd's streaming server) to its end (or until until(chans) is
    true) over WebSocket with the v4.channel.k8s.io subprotocol, sending nothing (no stdin). Returns
    {channel: bytes}: 1 stdout, 2 stderr, 3 the final status (JSON: {"status": "Success"} or a Failure with the
    exit code)."""
    import base64
    import os
    import socket
    import struct
    from urllib.parse import urlparse

    u = urlparse(url)
    key = base64.b64encode(os.urandom(16)).decode()
    path = u.path + (f"?{u.query}" if u.query else "")
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n").encode())
        f = s.makefile("rb")
        status = f.readline()
        if b" 101 " not in status:
            raise CRIError("stream", None, f"{url}: {status!r}")
        while f.readline() not in (b"\r\n", b""):
            pass
        chans = {}
        while True:
            head = f.read(2)
            if len(head) < 2:
                break
            op, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", f.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", f.read(8))[0]
            data = f.read(n)
            if op == 8:  # close
                break
            if op in (1, 2) and data:  # text or binary: first byte is the channel
                chans[data[0]] = chans.get(data[0], b"") + data[1:]
                if until is not None and until(chans):
                    break
        return chans
