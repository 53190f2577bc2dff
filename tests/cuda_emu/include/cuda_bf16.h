/* the CUDA emulator's stand-in for the toolkit's <cuda_bf16.h> (see ../emu.h) */
#include "../emu.h"
