/* the CUDA emulator's stand-in for the toolkit's <cuda_runtime.h> (see ../emu.h) */
#include "../emu.h"
