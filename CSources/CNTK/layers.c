/* layers.c — conv (im2col / col2im), average pooling and layer norm for one NHWC sample, in float32 and
 * float64 (layers_body.h, instantiated twice). The GEMMs of conv and dense are OpenBLAS's, called from Swift. */
#include "CNTK.h"

#include <math.h>
#include <string.h>

#define T float
#define SFX f32
#include "layers_body.h"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "layers_body.h"
#undef T
#undef SFX
