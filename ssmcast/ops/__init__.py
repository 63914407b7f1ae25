"""Pure tensor functions of the SSM literature: HiPPO, S4/S4D kernels, FFT convolution, S5's parallel scan,
Mamba's selective scan and Mamba-2's state space duality."""

from ssmcast.ops.conv import fft_conv
from ssmcast.ops.hippo import hippo_legs, nplr_legs
from ssmcast.ops.s4_kernels import dplr_kernel, s4d_kernel
from ssmcast.ops.s5 import discretize, s5_scan
from ssmcast.ops.selective_scan import has_cuda_kernel, selective_scan, selective_state_update
from ssmcast.ops.ssd import has_ssd_kernel, ssd, ssd_state_update

__all__ = [
    "hippo_legs", "nplr_legs", "s4d_kernel", "dplr_kernel", "fft_conv", "discretize", "s5_scan",
    "selective_scan", "selective_state_update", "has_cuda_kernel", "ssd", "ssd_state_update", "has_ssd_kernel",
]
