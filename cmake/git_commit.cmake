# git_commit.cmake: writes OUT (a header defining LFM2C_GIT_COMMIT) from the source tree's HEAD at
# build time, and only when the commit changed, so --version names the commit a binary was built
# from (not the one its build folder was configured from) without rebuilding on every make.
# cmake -DSRC=... -DOUT=... -P git_commit.cmake
execute_process(COMMAND git -C ${SRC} rev-parse --short=12 HEAD OUTPUT_VARIABLE commit
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT commit)
  set(commit unknown)
endif()
execute_process(COMMAND git -C ${SRC} status --porcelain --untracked-files=no OUTPUT_VARIABLE dirty
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(dirty)
  set(commit "${commit}+changes")
endif()
set(text "#define LFM2C_GIT_COMMIT \"${commit}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT old STREQUAL text)
  file(WRITE ${OUT} "${text}")
endif()
