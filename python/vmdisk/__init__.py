"""vmdisk: make the disks of virtual machines from base images (libvmdisk).

    import vmdisk
    with vmdisk.Context("/etc/vmdisk/vmdisk.conf") as ctx:
        info = ctx.create(instance_uuid, "disk", image="/srv/base.qcow2",
                          size="10G")

A Context holds one libvmdisk context (one configuration). Its methods are
the CLI's commands, their keyword arguments the CLI's options (underscores
for dashes), their results the dicts and lists the CLI prints with --json
(doc/json.md): create() and info() the info shape, fetch(), cache_list()
and cache_prune() theirs; inspect() the inspect shape except that
"reasons" is a list of "check: text" strings and "checks" the list of the
failed checks' names. Calls the CLI prints nothing for without --json
(resize, remove, convert, extract, snapshot_*, flatten) return None;
libvirt_xml() the XML text, direct_snapshot() the location.
Sizes are ints (bytes) or strings such as "10G" (K, M, G, T: powers of
1024). Strings go to the library unchanged: it validates instance ids
(UUIDs), disk and snapshot names and every option value itself.

Errors raise vmdisk.Error subclasses chosen by the library's error code:
InvalidArgument, NotFound, Exists, IOFailure, OutOfMemory, ExternalFailure,
Unsupported, ConfigError, Unsafe (refused by a safety check), TooSmall,
Busy, Corrupt. `.code` is the code's name ("VMD_E_NOTFOUND"); str(e) and
`.message` are the library's public message only (the detail, with paths
and program output, goes to the log the configuration names). Wrong Python
types raise TypeError; a call on a closed Context raises ValueError.

Threads: every call that does I/O runs with the GIL released, so other
Python threads run meanwhile.
  - Separate Contexts run in parallel, in threads as in processes: the
    cache entries and instance directories they share are guarded by file
    locks in the library.
  - One Context may be shared by several threads: it is safe (no crash, no
    corruption, every result right), but its calls run one at a time (a
    mutex per Context, taken with the GIL released), because the library
    uses one context from one thread at a time. Give each worker thread
    its own Context for parallel creates.
  - inspect() and convert() use no library context and run in parallel
    even on one shared Context.
  - close() waits for a call running on the Context in another thread;
    calls after it raise ValueError.
  - The library's logger is process-wide: the first Context's
    configuration (log_target, log_level) sets it up for the process.
"""

from vmdisk._vmdisk import (  # noqa: F401
    Busy,
    ConfigError,
    Context,
    Corrupt,
    Error,
    Exists,
    ExternalFailure,
    InvalidArgument,
    IOFailure,
    NotFound,
    OutOfMemory,
    TooSmall,
    Unsafe,
    Unsupported,
    __version__,
    version,
)

__all__ = [
    "Busy", "ConfigError", "Context", "Corrupt", "Error", "Exists",
    "ExternalFailure", "InvalidArgument", "IOFailure", "NotFound",
    "OutOfMemory", "TooSmall", "Unsafe", "Unsupported", "version",
]
