/* the CUDA emulator's stand-in for the toolkit's <mma.h> (see ../emu.h) */
#include "../emu.h"
