/* the CUDA emulator's stand-in for the toolkit's <cuda.h> (see ../emu.h) */
#include "../emu.h"
