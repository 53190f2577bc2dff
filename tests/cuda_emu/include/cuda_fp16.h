/* the CUDA emulator's stand-in for the toolkit's <cuda_fp16.h> (see ../emu.h) */
#include "../emu.h"
