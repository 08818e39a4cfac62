#include "emu.h"
thread_local dim3e threadIdx, blockIdx;
dim3e blockDim, gridDim;
std::barrier<>* g_block_bar;
thread_local WarpX* t_warp;
