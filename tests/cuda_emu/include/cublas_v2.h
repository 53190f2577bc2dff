/* the CUDA emulator's stand-in for the toolkit's <cublas_v2.h> (see ../emu.h) */
#include "../emu.h"
