"""libnftables, the library behind the `nft` command, loaded in-process with ctypes.

Why not the alternatives: Debian's `python3-nftables` module is this same
ctypes binding, but it lives in the system Python's dist-packages, which our
virtualenv does not see; a long-lived `nft -i` child would need framing of
its replies and a restart when it dies; pyroute2's nftables module has no
maps. The library's API is six C functions: a context, a command buffer
(one buffer is one atomic netlink batch), and output/error buffers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

# enum nft_output_flags (nftables/libnftables.h); we keep everything numeric
# so that ports never come back as service names.
_OUTPUT_NUMERIC_PROTO = 1 << 7
_OUTPUT_NUMERIC_PRIO = 1 << 8
_OUTPUT_NUMERIC_SYMBOL = 1 << 9
_NFT_CTX_DEFAULT = 0


class NftError(RuntimeError):
    """libnftables refused a command; the message is nft's own error text."""


class Libnftables:
    """One nftables context; `run` executes a buffer of commands as one transaction."""

    def __init__(self, soname: str | None = None) -> None:
        name = soname or ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise NftError(f"cannot load libnftables ({name}): {exc}; install the nftables package") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_buffer_output.restype = ctypes.c_int
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.restype = ctypes.c_int
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._lib = lib
        ctx = lib.nft_ctx_new(_NFT_CTX_DEFAULT)
        if not ctx:
            raise NftError("nft_ctx_new failed")
        self._ctx: int | None = ctx
        lib.nft_ctx_output_set_flags(
            ctx, _OUTPUT_NUMERIC_PROTO | _OUTPUT_NUMERIC_PRIO | _OUTPUT_NUMERIC_SYMBOL)
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        # A context is not thread-safe; the relay may query counters from
        # another thread than the one that installs flows.
        self._lock = threading.Lock()

    def run(self, commands: str) -> str:
        """nft's output for `commands` (one atomic batch); NftError with nft's message on failure."""
        with self._lock:
            if self._ctx is None:
                raise NftError("libnftables context is closed")
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
            out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(errors="replace")
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        if rc != 0:
            raise NftError(err.strip() or f"nft failed with code {rc}")
        return out

    def close(self) -> None:
        with self._lock:
            if self._ctx is not None:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None
