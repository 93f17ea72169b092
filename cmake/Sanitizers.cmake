# Sanitizer and fuzzing build options, applied to every target of the tree (included by the
# top-level CMakeLists.txt before any folder). Used by scripts/sanitize.sh and scripts/fuzz.sh, which
# CI runs; docs/FUZZING.md has the commands and the measured times.
#   DS4_SANITIZE=address,undefined  ASan + UBSan, -O1 -g; any UBSan finding aborts (no recovery)
#   DS4_SANITIZE=thread             TSan, -O1 -g
#   DS4_FUZZ=ON                     libFuzzer targets in fuzz/ (clang only); libraries get coverage
#                                   instrumentation, and ASan + UBSan unless DS4_SANITIZE says otherwise
set(DS4_SANITIZE "" CACHE STRING "Sanitizers for every target: address,undefined | thread | empty for none")
option(DS4_FUZZ "Build the libFuzzer targets in fuzz/ (needs clang)" OFF)

if(DS4_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "DS4_FUZZ=ON needs clang (libFuzzer): configure with -DCMAKE_CXX_COMPILER=clang++ "
                        "-DCMAKE_C_COMPILER=clang, got ${CMAKE_CXX_COMPILER_ID}")
  endif()
  if(NOT DS4_SANITIZE)
    set(DS4_SANITIZE "address,undefined" CACHE STRING "" FORCE)
  endif()
endif()

if(DS4_SANITIZE)
  if(DS4_SANITIZE MATCHES "thread" AND DS4_SANITIZE MATCHES "address")
    message(FATAL_ERROR "DS4_SANITIZE: thread cannot be combined with address (got '${DS4_SANITIZE}')")
  endif()
  if(NOT DS4_SANITIZE MATCHES "^(address|undefined|thread)(,(address|undefined|thread))*$")
    message(FATAL_ERROR "DS4_SANITIZE: expected a comma list of address, undefined, thread; got '${DS4_SANITIZE}'")
  endif()
  # -O1 keeps the CPU forward-pass tests fast enough; frame pointers give full report stacks.
  set(ds4_sanitize_flags -fsanitize=${DS4_SANITIZE} -fno-omit-frame-pointer -O1 -g)
  if(DS4_SANITIZE MATCHES "undefined")
    list(APPEND ds4_sanitize_flags -fno-sanitize-recover=all)
  endif()
  add_compile_options("$<$<COMPILE_LANGUAGE:C,CXX>:${ds4_sanitize_flags}>")
  add_link_options(-fsanitize=${DS4_SANITIZE})
  # Boost's assertions stay on in these Debug builds, through our handler, which passes one known
  # wrong Beast assertion (cmake/boost_assert_handler.cpp says which and why). An object library:
  # its object is linked into every target made after this, whatever the order of static libraries.
  add_compile_definitions(BOOST_ENABLE_ASSERT_HANDLER)
  add_library(ds4_boost_assert_handler OBJECT ${CMAKE_CURRENT_LIST_DIR}/boost_assert_handler.cpp)
  link_libraries(ds4_boost_assert_handler)
  message(STATUS "ds4serve: sanitizers ${DS4_SANITIZE}")
endif()

if(DS4_FUZZ)
  # Coverage feedback for libFuzzer in every library; only the fuzz targets link its main().
  # clang 14 fails on coroutines (http/) with coverage plus UBSan's "function" check ("Cannot
  # represent a difference across sections"): that one check is left out of fuzz builds.
  # The numeric code no fuzz target reaches is left out of coverage (not of ASan/UBSan): it made the
  # forward-pass tests of this build several times slower (fuzz-coverage-ignorelist.txt).
  add_compile_options("$<$<COMPILE_LANGUAGE:C,CXX>:-fsanitize=fuzzer-no-link>"
    "$<$<COMPILE_LANGUAGE:C,CXX>:-fsanitize-coverage-ignorelist=${CMAKE_CURRENT_LIST_DIR}/fuzz-coverage-ignorelist.txt>")
  if(DS4_SANITIZE MATCHES "undefined")
    add_compile_options("$<$<COMPILE_LANGUAGE:C,CXX>:-fno-sanitize=function>")
  endif()
  message(STATUS "ds4serve: libFuzzer targets in fuzz/")
endif()
