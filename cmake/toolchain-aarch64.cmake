# toolchain-aarch64.cmake — cross-compiles lfm2c for 64-bit ARM Linux on a Debian x86-64 host
# (cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake), and runs the
# test programs under qemu user-mode emulation, so `ctest` in that build tests the ARM code paths
# on a machine without ARM hardware (scripts/test.sh's ARM stage does this in CI).
#
# What the host needs (scripts/setup.sh installs it): gcc-aarch64-linux-gnu and
# libc6-dev-arm64-cross (the cross compiler and its C library), qemu-user (qemu-aarch64), and the
# arm64 multiarch jansson (dpkg --add-architecture arm64; apt-get install libjansson-dev:arm64),
# which lives in /usr/lib/aarch64-linux-gnu. Debian's cross gcc already searches /usr/include
# and /usr/lib/aarch64-linux-gnu, so only pkg-config has to be pointed at the arm64 .pc files.
#
# The programs are linked dynamically, as a native build's are, and qemu runs them with the arm64
# multiarch loader and libc (-L below). (A static link would clash: the internal archive's
# utf8_encode meets libjansson.a's.) The emulated CPU model is the cache variable LFM2C_QEMU_CPU
# (-DLFM2C_QEMU_CPU=cortex-a72 on a configured build switches it without rebuilding); its first
# value comes from the environment variable of that name, else "max" (every extension qemu
# implements, dotprod and i8mm included). "cortex-a72" is plain ARMv8.0 NEON.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(LFM2C_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${LFM2C_CROSS_TRIPLE}-gcc)
# (CMake finds the target's binutils, ${LFM2C_CROSS_TRIPLE}-ar, -ld, -objcopy, from the compiler's name.)

# Libraries and headers: the cross libc's tree plus the multiarch ones (/usr/lib/aarch64-linux-gnu,
# which CMAKE_LIBRARY_ARCHITECTURE names); programs (pkg-config, qemu) are the host's.
set(CMAKE_FIND_ROOT_PATH /usr/${LFM2C_CROSS_TRIPLE})
set(CMAKE_LIBRARY_ARCHITECTURE ${LFM2C_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config reads only the arm64 multiarch .pc files (and the architecture-independent ones):
# the host's x86-64 libcurl or libmicrohttpd are then not found, so the hub is left out of this
# build, as a library without them should be. (The host pkg-config binary is fine: the .pc files
# name absolute multiarch paths, so no sysroot is needed.)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${LFM2C_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

# ctest (and CMake's try_run) run the target's programs under qemu-aarch64.
if(NOT DEFINED LFM2C_QEMU_CPU)
  if(DEFINED ENV{LFM2C_QEMU_CPU} AND NOT "$ENV{LFM2C_QEMU_CPU}" STREQUAL "")
    set(LFM2C_QEMU_CPU "$ENV{LFM2C_QEMU_CPU}")
  else()
    set(LFM2C_QEMU_CPU max)
  endif()
endif()
set(LFM2C_QEMU_CPU "${LFM2C_QEMU_CPU}" CACHE STRING "qemu-aarch64 -cpu model the tests run on (max, cortex-a72, ...)")
find_program(LFM2C_QEMU NAMES qemu-aarch64 qemu-aarch64-static)
if(LFM2C_QEMU)
  # -L /: the programs run with the host's arm64 multiarch loader and libc (libc6:arm64, which
  # libjansson4:arm64 depends on: /lib/ld-linux-aarch64.so.1, /lib/aarch64-linux-gnu), the same
  # build of glibc as its libjansson. Not the cross tree /usr/aarch64-linux-gnu (libc6-arm64-cross,
  # for linking): its loader with the multiarch libc.so.6, a different Debian build of glibc,
  # hangs in the first pthread_create. Explicit, as Debian's qemu otherwise looks in
  # /etc/qemu-binfmt/aarch64, which may point anywhere.
  set(CMAKE_CROSSCOMPILING_EMULATOR ${LFM2C_QEMU} -cpu ${LFM2C_QEMU_CPU} -L /)
endif()
