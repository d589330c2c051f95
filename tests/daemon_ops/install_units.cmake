# install_units - `cmake --install` of the Runtime component into a scratch
# prefix puts the systemd units under <prefix>/<unitdir> with ExecStart= and
# --config naming that prefix (not the configure-time one), installs the
# sample configuration, and on a second install keeps an edited
# configuration (the sample goes next to it as umapd.conf.sample).
#
#   cmake -DBUILD_DIR=... -DWORK_DIR=... -DUNITDIR=lib/systemd/system
#         -DSBINDIR=sbin -DSYSCONFDIR=etc -P install_units.cmake
function(fail msg)
  message(FATAL_ERROR "FAIL install_units: ${msg}")
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}" --component Runtime
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  fail("cmake --install exited ${rc}: ${err}")
endif()

set(svc "${prefix}/${UNITDIR}/umapd.service")
set(sock "${prefix}/${UNITDIR}/umapd.socket")
set(conf "${prefix}/${SYSCONFDIR}/umapd/umapd.conf")
foreach(f "${svc}" "${sock}" "${conf}" "${prefix}/${SBINDIR}/umapd")
  if(NOT EXISTS "${f}")
    fail("${f} was not installed")
  endif()
endforeach()

file(STRINGS "${svc}" exec REGEX "^ExecStart=")
set(want "ExecStart=${prefix}/${SBINDIR}/umapd --config ${conf}")
if(NOT exec STREQUAL want)
  fail("'${exec}', want '${want}'")
endif()
file(READ "${svc}" text)
if(text MATCHES "@[A-Z_]+@")
  fail("umapd.service has an unsubstituted ${CMAKE_MATCH_0}")
endif()

# An administrator's edit survives the next install.
file(APPEND "${conf}" "budget = 1G\n")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}" --component Runtime
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  fail("second cmake --install exited ${rc}: ${err}")
endif()
file(STRINGS "${conf}" edited REGEX "^budget = 1G$")
if(NOT edited)
  fail("the second install overwrote the edited ${conf}")
endif()
if(NOT EXISTS "${conf}.sample")
  fail("the second install did not put the sample at ${conf}.sample")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
message("PASS install_units: units under ${UNITDIR} naming the install prefix, sample configuration installed once, edits kept")
