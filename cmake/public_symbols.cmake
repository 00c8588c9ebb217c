# public_symbols.cmake — writes the names of the public API (every lfm2c_* function declared in
# include/lfm2c.h): one per line, for objcopy --keep-global-symbols (liblfm2c.a), or with
# -DFORMAT=version-script as a linker version script that exports them alone (liblfm2c.so), or
# with -DFORMAT=def as a module-definition file that does the same for lfm2c.dll (Windows).
# usage: cmake -DHEADER=include/lfm2c.h -DOUT=public.syms [-DFORMAT=version-script] -P public_symbols.cmake
file(READ ${HEADER} text)
string(REGEX MATCHALL "lfm2c_[a-z0-9_]+[ \t\n]*\\(" calls "${text}")
set(names "")
foreach(c ${calls})
  string(REGEX REPLACE "[ \t\n]*\\($" "" n "${c}")
  list(APPEND names ${n})
endforeach()
list(REMOVE_DUPLICATES names)
list(SORT names)
if(FORMAT STREQUAL "version-script")
  string(REPLACE ";" ";\n    " body "${names}")
  file(WRITE ${OUT} "{\n  global:\n    ${body};\n  local: *;\n};\n")
elseif(FORMAT STREQUAL "def")
  string(REPLACE ";" "\n    " body "${names}")
  file(WRITE ${OUT} "EXPORTS\n    ${body}\n")
else()
  string(REPLACE ";" "\n" body "${names}")
  file(WRITE ${OUT} "${body}\n")
endif()
