"""Asks the CUDA runtime (libcudart.so.12, from the environment) about the GPUs the host's driver exposes.

Prints the runtime and driver API versions, each device's name and memory, and round-trips a buffer through
device memory (cudaMalloc, host->device, device->host copies). Exits non-zero with the CUDA error on failure.
Needs only Python's standard library: ctypes.
"""
import ctypes
import os
import sys

rt = ctypes.CDLL("libcudart.so.12")
rt.cudaGetErrorString.restype = ctypes.c_char_p


def check(what, status):
    if status != 0:
        msg = rt.cudaGetErrorString(status).decode()
        sys.exit(f"{what} failed: error {status} ({msg})")


class Prop(ctypes.Structure):
    # cudaDeviceProp starts with char name[256]; the rest is read through cudaDeviceGetAttribute and cudaMemGetInfo.
    _fields_ = [("name", ctypes.c_char * 256), ("rest", ctypes.c_byte * 4096)]


runtime, driver = ctypes.c_int(), ctypes.c_int()
check("cudaRuntimeGetVersion", rt.cudaRuntimeGetVersion(ctypes.byref(runtime)))
check("cudaDriverGetVersion", rt.cudaDriverGetVersion(ctypes.byref(driver)))
print(f"CUDA runtime {runtime.value}, driver API {driver.value}")
count = ctypes.c_int()
check("cudaGetDeviceCount", rt.cudaGetDeviceCount(ctypes.byref(count)))
print(f"cudaGetDeviceCount: {count.value}")
for dev in range(count.value):
    prop = Prop()
    check("cudaGetDeviceProperties", rt.cudaGetDeviceProperties(ctypes.byref(prop), dev))
    major, minor = ctypes.c_int(), ctypes.c_int()
    check("cudaDeviceGetAttribute", rt.cudaDeviceGetAttribute(ctypes.byref(major), 75, dev))  # compute capability major
    check("cudaDeviceGetAttribute", rt.cudaDeviceGetAttribute(ctypes.byref(minor), 76, dev))  # compute capability minor
    check("cudaSetDevice", rt.cudaSetDevice(dev))
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    check("cudaMemGetInfo", rt.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)))
    print(f"device {dev}: {prop.name.decode()}, compute capability {major.value}.{minor.value}, {total.value / 2**30:.1f} GiB")

    n = 64 << 20  # 64 MiB
    src = os.urandom(n)
    back = ctypes.create_string_buffer(n)
    ptr = ctypes.c_void_p()
    check("cudaMalloc", rt.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(n)))
    check("cudaMemcpy host->device", rt.cudaMemcpy(ptr, src, ctypes.c_size_t(n), 1))
    check("cudaMemcpy device->host", rt.cudaMemcpy(back, ptr, ctypes.c_size_t(n), 2))
    check("cudaFree", rt.cudaFree(ptr))
    if back.raw != src:
        sys.exit(f"device {dev}: the {n >> 20} MiB round-trip came back different")
    print(f"device {dev}: {n >> 20} MiB host -> device -> host round-trip identical")
if count.value < 1:
    sys.exit("no CUDA device")
