# Install rules for umapd, included at the end of the top-level CMakeLists.txt.
#
# cmake --install <build> [--prefix P] puts, under GNUInstallDirs places:
#   <libdir>/libumapd.so{,.0,.0.1.0}        shared library and its soname links
#   <libdir>/libumapd.a                     static library
#   <includedir>/umapd.h                    public header(s)
#   <includedir>/umap.h, umap/umap.h        the LLNL UMap interface (both of UMap's paths)
#   <libdir>/cmake/umapd/                   CMake package: find_package(umapd) -> umapd::umapd,
#                                           umapd::umapd_static, umapd::umap
#   <libdir>/pkgconfig/umapd.pc             pkg-config file
#   <datadir>/doc/umapd/                    README.md and docs/*.md
#
# Components: Runtime (the shared library), Development (everything else).
# The pkg-config file is written at install time so that it names the
# prefix actually installed to (cmake --install --prefix overrides the one
# given at configure time); the CMake package is relocatable by itself.
#
#   <libdir>/libumapd-preload.so            the LD_PRELOAD library (Runtime; no soname:
#                                           it is named by path in LD_PRELOAD)
#
#   <sbindir>/umapd, <bindir>/umapctl       the daemon and its control tool (Runtime;
#                                           rules in daemon/server, daemon/umapctl)
#   <prefix>/lib/systemd/system/umapd.{service,socket}
#                                           systemd units, generated at install time for
#                                           the prefix installed to (Runtime; rules in
#                                           daemon/common/CMakeLists.txt, UMAPD_SYSTEMD_UNITDIR)
#   <sysconfdir>/umapd/umapd.conf           the sample configuration, never over an
#                                           existing one (then umapd.conf.sample)

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(UMAPD_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/umapd" CACHE STRING
  "Where the CMake package files are installed, relative to the prefix")
mark_as_advanced(UMAPD_INSTALL_CMAKEDIR)

# umapd_warnings (our warning and sanitizer flags) is linked as
# $<BUILD_INTERFACE:...> in lib/CMakeLists.txt, so it never reaches the
# exported link interface of the static library.

# --- libraries and headers ---------------------------------------------------
install(TARGETS umapd umapd_static umapd_umap
  EXPORT umapdTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    COMPONENT Runtime
    NAMELINK_COMPONENT Development
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    COMPONENT Development
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
    COMPONENT Runtime)

# The preload library is loaded by path, not linked against: no export.
install(TARGETS umapd_preload
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    COMPONENT Runtime)

# Every public header in include/ (umapd.h, umap.h, umap/umap.h).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  COMPONENT Development
  FILES_MATCHING PATTERN "*.h")

# --- CMake package -------------------------------------------------------------
install(EXPORT umapdTargets
  NAMESPACE umapd::
  FILE umapdTargets.cmake
  DESTINATION ${UMAPD_INSTALL_CMAKEDIR}
  COMPONENT Development)

configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/umapdConfig.cmake.in
  ${PROJECT_BINARY_DIR}/umapdConfig.cmake
  INSTALL_DESTINATION ${UMAPD_INSTALL_CMAKEDIR}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR)
# Before 1.0 a minor release may change the API, so only the same
# major.minor is compatible.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/umapdConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/umapdConfig.cmake
  ${PROJECT_BINARY_DIR}/umapdConfigVersion.cmake
  DESTINATION ${UMAPD_INSTALL_CMAKEDIR}
  COMPONENT Development)

# --- pkg-config ----------------------------------------------------------------
# libdir and includedir are written relative to ${prefix} when the install
# dirs are relative (the usual case), absolute otherwise.
foreach(_umapd_d IN ITEMS LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_umapd_d}}")
    set(UMAPD_PC_${_umapd_d} "${CMAKE_INSTALL_${_umapd_d}}")
  else()
    set(UMAPD_PC_${_umapd_d} "\${prefix}/${CMAKE_INSTALL_${_umapd_d}}")
  endif()
endforeach()
unset(_umapd_d)
# Two passes: everything known now is filled in at configure time; the
# prefix is left as @UMAPD_PC_PREFIX@ and filled in by the install step.
set(UMAPD_PC_PREFIX "@UMAPD_PC_PREFIX@")
configure_file(${CMAKE_CURRENT_LIST_DIR}/umapd.pc.in ${PROJECT_BINARY_DIR}/umapd.pc.stage @ONLY)
install(CODE "
  get_filename_component(UMAPD_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\" ABSOLUTE)
  configure_file(\"${PROJECT_BINARY_DIR}/umapd.pc.stage\" \"${PROJECT_BINARY_DIR}/umapd.pc\" @ONLY)
  " COMPONENT Development)
install(FILES ${PROJECT_BINARY_DIR}/umapd.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
  COMPONENT Development)

# --- documentation -------------------------------------------------------------
foreach(_umapd_f IN ITEMS README.md LICENSE COPYING)
  if(EXISTS ${PROJECT_SOURCE_DIR}/${_umapd_f})
    install(FILES ${PROJECT_SOURCE_DIR}/${_umapd_f}
      DESTINATION ${CMAKE_INSTALL_DOCDIR}
      COMPONENT Development)
  endif()
endforeach()
unset(_umapd_f)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/
  DESTINATION ${CMAKE_INSTALL_DOCDIR}
  COMPONENT Development
  FILES_MATCHING PATTERN "*.md")
