/* memory.c — process-wide allocator settings. */
#include "CNTK.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

static int g_kept = 0;

int ntk_keep_freed_memory(void) {
#if defined(__GLIBC__)
    /* Large blocks from the heap instead of fresh mmaps, and a heap that is not trimmed: a freed 400 MB kernel is
     * reused by the next one without faulting in (and zeroing) 100,000 fresh pages again. */
    g_kept = mallopt(M_MMAP_MAX, 0) && mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
#endif
    return g_kept;
}

int ntk_freed_memory_kept(void) { return g_kept; }
