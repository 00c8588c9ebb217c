# toolchain-mingw64.cmake — cross-compiles lfm2c (and the libraries scripts/build-windows.sh builds
# for it) for Windows x64 with Debian's mingw-w64 (gcc-mingw-w64-x86-64-posix: POSIX threads are
# winpthreads, so the code's pthreads work unchanged), and runs the test programs under Wine, so
# `ctest` in that build tests the Windows code paths on Linux (scripts/test_windows.sh).
#   cmake -S . -B build-windows -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-mingw64.cmake -DLFM2C_WIN_PREFIX=DIR
# LFM2C_WIN_PREFIX: where the Windows builds of jansson, libmicrohttpd, curl and the image and
# audio decoders are (include/, lib/, lib/pkgconfig/): only there are libraries and .pc files looked for.
#
# Flags, and why:
#  - _WIN32_WINNT=0x0A00: Windows 10's API (WaitOnAddress, WSAPoll, CreateSymbolicLinkW's
#    unprivileged flag); __USE_MINGW_ANSI_STDIO=1: printf and friends are mingw's C99 ones (%zu,
#    %lld, %a as on Linux), not msvcrt's. -Wno-format: GCC checks format(printf) attributes
#    against msvcrt's printf on this target, which the line above replaced.
#  - -Wa,-muse-unaligned-vector-move: Windows x64 aligns the stack to 16 bytes only, and GCC
#    does not realign it for 32- and 64-byte AVX / AVX-512 spills, which it then reads and writes
#    with aligned moves (GCC bug 54412: a crash where a spill slot falls on an odd 16 bytes). The
#    assembler writes every aligned vector move as its unaligned twin, which costs nothing on
#    aligned data, so the kernels' spills are safe wherever they fall.
#  - -static: the mingw runtime and winpthreads are linked in: lfm2c.exe and lfm2c.dll need no
#    other DLL. (Files are bytes, as on Linux, without a flag: the CLI sets _fmode at its start,
#    os_console_utf8, the tests in tests/test.h, and the library's own os_fopen asks for it.)
#    --stack 8 MB: the programs' threads get Linux's default stack (Windows' is 2 MB with mingw,
#    1 MB with MSVC); the chat template interpreter's depth budget is sized for it.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(LFM2C_WIN_TRIPLE x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${LFM2C_WIN_TRIPLE}-gcc-posix)
set(CMAKE_CXX_COMPILER ${LFM2C_WIN_TRIPLE}-g++-posix)
set(CMAKE_RC_COMPILER ${LFM2C_WIN_TRIPLE}-windres)
set(CMAKE_AR ${LFM2C_WIN_TRIPLE}-ar CACHE FILEPATH "")
set(CMAKE_RANLIB ${LFM2C_WIN_TRIPLE}-ranlib CACHE FILEPATH "")
set(CMAKE_C_FLAGS_INIT "-D_WIN32_WINNT=0x0A00 -D__USE_MINGW_ANSI_STDIO=1 -Wno-format -Wa,-muse-unaligned-vector-move")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static -Wl,--stack,8388608")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static")

if(NOT LFM2C_WIN_PREFIX AND DEFINED ENV{LFM2C_WIN_PREFIX})
  set(LFM2C_WIN_PREFIX "$ENV{LFM2C_WIN_PREFIX}")
endif()
set(LFM2C_WIN_PREFIX "${LFM2C_WIN_PREFIX}" CACHE PATH "the Windows libraries' prefix (scripts/build-windows.sh)")
set(CMAKE_FIND_ROOT_PATH /usr/${LFM2C_WIN_TRIPLE} ${LFM2C_WIN_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# pkg-config reads the prefix's .pc files only, with their private (static) libraries. (CMake reads
# this file again for each try_compile, without the cache: the prefix travels with
# CMAKE_TRY_COMPILE_PLATFORM_VARIABLES, and only a known prefix sets the environment.)
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES LFM2C_WIN_PREFIX)
if(LFM2C_WIN_PREFIX)
  set(ENV{PKG_CONFIG_LIBDIR} "${LFM2C_WIN_PREFIX}/lib/pkgconfig")
  set(ENV{PKG_CONFIG_PATH} "")
  set(ENV{PKG_CONFIG_SYSROOT_DIR} "")
endif()
# (a wrapper rather than PKG_CONFIG_ARGN, which CMake 3.25 passes as one word with the first flag)
if(NOT EXISTS ${CMAKE_BINARY_DIR}/pkg-config-static)
  file(WRITE ${CMAKE_BINARY_DIR}/pkg-config-static "#!/bin/sh\nexec pkg-config --static \"$@\"\n")
  file(CHMOD ${CMAKE_BINARY_DIR}/pkg-config-static PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE)
endif()
set(PKG_CONFIG_EXECUTABLE ${CMAKE_BINARY_DIR}/pkg-config-static CACHE FILEPATH "")

# ctest (and try_run) run the programs under Wine (wine64 from Debian's wine64 package).
find_program(LFM2C_WINE NAMES wine64 wine PATHS /usr/lib/wine NO_CMAKE_FIND_ROOT_PATH)
if(LFM2C_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${LFM2C_WINE})
endif()
