# run_package_test.cmake - driven by ctest (see CMakeLists.txt here):
#   1. cmake --install <build> --prefix <work>/prefix
#   2. check the installed layout (libraries, soname links, header, CMake
#      package, pkg-config file, docs)
#   3. configure, build and run consumer/ with find_package(umapd)
#   4. compile and run consumer/consumer.c with pkg-config --cflags --libs umapd
# Prints one line per step, and the output of the step that failed.

foreach(v UMAPD_BUILD_DIR WORK_DIR CONSUMER_DIR LIBDIR INCLUDEDIR DOCDIR VERSION SOVERSION
          C_COMPILER GENERATOR)
  if("${${v}}" STREQUAL "")
    message(FATAL_ERROR "run_package_test.cmake: -D${v}=... is required")
  endif()
endforeach()
if(IS_ABSOLUTE "${LIBDIR}" OR IS_ABSOLUTE "${INCLUDEDIR}")
  message("SKIP: install dirs are absolute (${LIBDIR}, ${INCLUDEDIR}); cannot install to a scratch prefix")
  return()
endif()

set(prefix "${WORK_DIR}/prefix")
set(libdir "${prefix}/${LIBDIR}")
set(san_flags "")
if(NOT "${SANITIZE}" STREQUAL "")
  # A sanitized library needs a sanitized program to load it.
  set(san_flags "-fsanitize=${SANITIZE}")
endif()

function(step what)
  execute_process(COMMAND ${ARGN}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAIL ${what}: exit ${rc}\ncommand: ${ARGN}\n--- stdout\n${out}\n--- stderr\n${err}")
  endif()
  string(STRIP "${out}" out)
  set(step_out "${out}" PARENT_SCOPE)
endfunction()

# 1. install
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(cfg_args "")
if(NOT "${CONFIG}" STREQUAL "")
  set(cfg_args --config "${CONFIG}")
endif()
step("cmake --install" ${CMAKE_COMMAND} --install "${UMAPD_BUILD_DIR}" --prefix "${prefix}" ${cfg_args})
message("ok install: ${prefix}")

# 2. layout
set(expect
  "${libdir}/libumapd.so.${VERSION}"
  "${libdir}/libumapd.so.${SOVERSION}"
  "${libdir}/libumapd.so"
  "${libdir}/libumapd.a"
  "${prefix}/${INCLUDEDIR}/umapd.h"
  "${prefix}/${INCLUDEDIR}/umap.h"
  "${prefix}/${INCLUDEDIR}/umap/umap.h"
  "${libdir}/cmake/umapd/umapdConfig.cmake"
  "${libdir}/cmake/umapd/umapdConfigVersion.cmake"
  "${libdir}/cmake/umapd/umapdTargets.cmake"
  "${libdir}/pkgconfig/umapd.pc"
  "${prefix}/${DOCDIR}/README.md")
foreach(f IN LISTS expect)
  if(NOT EXISTS "${f}")
    message(FATAL_ERROR "FAIL layout: ${f} is not installed")
  endif()
endforeach()
foreach(link "${libdir}/libumapd.so" "${libdir}/libumapd.so.${SOVERSION}")
  if(NOT IS_SYMLINK "${link}")
    message(FATAL_ERROR "FAIL layout: ${link} is not a symlink")
  endif()
endforeach()
file(READ "${libdir}/pkgconfig/umapd.pc" pc)
string(FIND "${pc}" "prefix=${prefix}\n" pos)
if(pos LESS 0)
  message(FATAL_ERROR "FAIL layout: umapd.pc does not name the install prefix ${prefix}:\n${pc}")
endif()
file(READ "${libdir}/cmake/umapd/umapdTargets.cmake" targets)
string(FIND "${targets}" "umapd_warnings" pos1)
string(FIND "${targets}" "${UMAPD_BUILD_DIR}" pos2)
if(pos1 GREATER_EQUAL 0 OR pos2 GREATER_EQUAL 0)
  message(FATAL_ERROR "FAIL layout: umapdTargets.cmake refers to build-tree things:\n${targets}")
endif()
message("ok layout: libumapd.so.${VERSION} + soname links, libumapd.a, umapd.h, umap.h, umap/umap.h, CMake package, umapd.pc, docs")

# 3. find_package consumer
set(cbuild "${WORK_DIR}/cmake-consumer")
set(gen_args -G "${GENERATOR}")
if(NOT "${MAKE_PROGRAM}" STREQUAL "")
  list(APPEND gen_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
step("configure find_package consumer" ${CMAKE_COMMAND} -S "${CONSUMER_DIR}" -B "${cbuild}"
  ${gen_args}
  "-DCMAKE_C_COMPILER=${C_COMPILER}"
  "-DCMAKE_BUILD_TYPE=RelWithDebInfo"
  "-DCMAKE_PREFIX_PATH=${prefix}"
  "-DCMAKE_C_FLAGS=${san_flags}"
  "-DCMAKE_EXE_LINKER_FLAGS=${san_flags}"
  "-DUMAPD_EXPECT_VERSION=${VERSION}")
file(STRINGS "${cbuild}/CMakeCache.txt" found_dir REGEX "^umapd_DIR:")
if(NOT found_dir STREQUAL "umapd_DIR:PATH=${libdir}/cmake/umapd")
  message(FATAL_ERROR "FAIL find_package: found ${found_dir}, expected the one in ${libdir}/cmake/umapd")
endif()
step("build find_package consumer" ${CMAKE_COMMAND} --build "${cbuild}")
step("run find_package consumer (shared)" "${cbuild}/consumer_shared")
message("${step_out}")
step("run find_package consumer (static)" "${cbuild}/consumer_static")
message("${step_out}")
step("run find_package consumer (umapd::umap)" "${cbuild}/consumer_umap")
message("${step_out}")

# 4. pkg-config consumer
if("${PKG_CONFIG}" STREQUAL "" OR NOT EXISTS "${PKG_CONFIG}")
  message(FATAL_ERROR "FAIL pkg-config: pkg-config not found (apt-get install pkg-config)")
endif()
set(ENV{PKG_CONFIG_PATH} "${libdir}/pkgconfig")
step("pkg-config --modversion" "${PKG_CONFIG}" --modversion umapd)
if(NOT step_out STREQUAL VERSION)
  message(FATAL_ERROR "FAIL pkg-config: --modversion says ${step_out}, expected ${VERSION}")
endif()
step("pkg-config --cflags" "${PKG_CONFIG}" --cflags umapd)
separate_arguments(pc_cflags UNIX_COMMAND "${step_out}")
step("pkg-config --libs" "${PKG_CONFIG}" --libs umapd)
separate_arguments(pc_libs UNIX_COMMAND "${step_out}")
step("pkg-config --static --libs" "${PKG_CONFIG}" --static --libs umapd)
if(NOT step_out MATCHES "-lpthread")
  message(FATAL_ERROR "FAIL pkg-config: --static --libs lacks -lpthread: ${step_out}")
endif()
separate_arguments(san_list UNIX_COMMAND "${san_flags}")
set(pc_exe "${WORK_DIR}/pkgconfig-consumer")
step("compile pkg-config consumer" "${C_COMPILER}" ${san_list} -std=c11 -Wall -Wextra -Werror
  "-DCONSUMER_KIND=\"pkg-config\"" ${pc_cflags}
  "${CONSUMER_DIR}/consumer.c" -o "${pc_exe}" ${pc_libs})
step("run pkg-config consumer" ${CMAKE_COMMAND} -E env "LD_LIBRARY_PATH=${libdir}" "${pc_exe}")
message("${step_out}")
message("package test passed: installed to ${prefix}; find_package (shared, static) and pkg-config consumers built and ran")
