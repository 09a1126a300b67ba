/* CZlib: the system zlib, plus static-inline wrappers for the function-like macros Swift cannot call. */
#ifndef NTK_CZLIB_SHIM_H
#define NTK_CZLIB_SHIM_H

#include <zlib.h>

/* Raw deflate (no zlib/gzip header), as zip members store it: windowBits = -15. */
static inline int CZlib_deflateInitRaw(z_streamp strm, int level) {
    return deflateInit2(strm, level, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
}
static inline int CZlib_inflateInitRaw(z_streamp strm) {
    return inflateInit2(strm, -MAX_WBITS);
}
/* gzip or zlib stream with automatic header detection (windowBits 15 + 32). */
static inline int CZlib_inflateInitAuto(z_streamp strm) {
    return inflateInit2(strm, MAX_WBITS + 32);
}

#endif
