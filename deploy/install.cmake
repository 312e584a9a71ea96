# Installing hookd the way operators install daemons (included from the top
# CMakeLists.txt):
#   cmake --install build [--prefix P]   binaries, /etc/hookd/hookd.conf, man pages,
#                                        the systemd unit and sysusers entry,
#                                        Prometheus rules, docs
#   cpack --config build/CPackConfig.cmake   a .deb of the same tree (prefix /usr)
# scripts/check-install installs into a temporary prefix, builds the .deb and
# checks both.
# A daemon packaged for Debian: /usr by default. The config goes to /etc/hookd
# when the prefix is /usr, else to <prefix>/etc/hookd, decided when installing,
# so `cmake --install build --prefix P` keeps everything under P (the systemd
# unit names the paths it was installed with).
if(CMAKE_INSTALL_PREFIX_INITIALIZED_TO_DEFAULT)
  set(CMAKE_INSTALL_PREFIX /usr CACHE PATH "Install prefix" FORCE)
endif()
include(GNUInstallDirs)

# Man pages, generated from the built binaries and config/hookd.conf; the
# generator fails the build when the sample config and the config table differ.
find_program(HK_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT HK_PYTHON3)
  find_program(HK_PYTHON3 NAMES python3)
endif()
set(HK_MAN_DIR ${CMAKE_BINARY_DIR}/man)
set(HK_MAN_PAGES ${HK_MAN_DIR}/hookd.8 ${HK_MAN_DIR}/hookctl.1 ${HK_MAN_DIR}/hookd.conf.5)
# Debian policy: man pages and the changelog are installed gzip -9n'd.
configure_file(deploy/debian/changelog.in ${CMAKE_BINARY_DIR}/changelog @ONLY)
add_custom_command(
  OUTPUT ${HK_MAN_DIR}/hookd.8.gz ${HK_MAN_DIR}/hookctl.1.gz ${HK_MAN_DIR}/hookd.conf.5.gz
         ${CMAKE_BINARY_DIR}/changelog.gz
  COMMAND ${HK_PYTHON3} ${CMAKE_SOURCE_DIR}/scripts/gen-man ${HK_MAN_DIR} $<TARGET_FILE:hookd>
          $<TARGET_FILE:hookctl> ${CMAKE_SOURCE_DIR}/config/hookd.conf ${PROJECT_VERSION}
  COMMAND gzip -9nkf ${HK_MAN_PAGES} ${CMAKE_BINARY_DIR}/changelog
  DEPENDS hookd hookctl ${CMAKE_SOURCE_DIR}/scripts/gen-man ${CMAKE_SOURCE_DIR}/config/hookd.conf
          ${CMAKE_BINARY_DIR}/changelog
  COMMENT "man pages: hookd(8), hookctl(1), hookd.conf(5)"
  VERBATIM)
add_custom_target(hookd_man ALL DEPENDS ${HK_MAN_DIR}/hookd.8.gz ${CMAKE_BINARY_DIR}/changelog.gz)


install(TARGETS hookd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS hookctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The config (0644 as shipped; the .deb's postinst makes it 0640 root:hookd) and
# the unit, which names the installed paths: both placed when installing.
install(CODE "
  if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    set(HK_SYSCONFDIR /etc)
  else()
    set(HK_SYSCONFDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SYSCONFDIR}\")
  endif()
  set(HK_SBINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SBINDIR}\")
  configure_file(${CMAKE_SOURCE_DIR}/deploy/systemd/hookd.service.in
                 ${CMAKE_BINARY_DIR}/hookd.service @ONLY)
  file(INSTALL DESTINATION \"\${HK_SYSCONFDIR}/hookd\" TYPE FILE
       FILES ${CMAKE_SOURCE_DIR}/config/hookd.conf)
  file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\"
       TYPE FILE FILES ${CMAKE_BINARY_DIR}/hookd.service)
")
install(FILES ${HK_MAN_DIR}/hookd.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${HK_MAN_DIR}/hookctl.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${HK_MAN_DIR}/hookd.conf.5.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES deploy/systemd/hookd.sysusers DESTINATION lib/sysusers.d RENAME hookd.conf)
install(FILES deploy/prometheus/alerts.yml deploy/prometheus/prometheus.yml
        DESTINATION ${CMAKE_INSTALL_DATADIR}/hookd/prometheus)
install(FILES deploy/grafana/hookd.json DESTINATION ${CMAKE_INSTALL_DATADIR}/hookd/grafana)
install(FILES README.md docs/architecture.md docs/operations.md docs/testing.md
              deploy/debian/copyright ${CMAKE_BINARY_DIR}/changelog.gz
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The .deb: the same tree under /usr, /etc/hookd/hookd.conf as a conffile, the
# library dependencies computed by dpkg-shlibdeps from the binaries.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME hookd)
set(CPACK_PACKAGE_VENDOR "hookd")
set(CPACK_PACKAGE_CONTACT "hookd maintainers <maintainers@hookd.dev>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "webhook delivery worker for Kafka jobs")
set(CPACK_PACKAGE_DESCRIPTION "hookd consumes jobs from Kafka and delivers them as Standard Webhooks
requests, with retries, circuit breakers, dead letters, PostgreSQL batch
checkpoints and Redis shared state.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr) # whatever prefix this build tree was configured with
set(CPACK_SET_DESTDIR ON) # /etc/hookd is absolute
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, ca-certificates")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/deploy/debian/postinst ${CMAKE_SOURCE_DIR}/deploy/debian/prerm
    ${CMAKE_SOURCE_DIR}/deploy/debian/postrm ${CMAKE_SOURCE_DIR}/deploy/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
# The daemon only: the default component (hookd-testkit, below, is left out).
set(CPACK_INSTALL_CMAKE_PROJECTS "${CMAKE_BINARY_DIR};hookd;Unspecified;/")
include(CPack)

# hookd-testkit (component "testkit", not in the .deb above): the library, its
# header, pkg-config and CMake package files, the standalone sink and what the
# kit starts (the mock Kafka cluster, the real-Kafka script). Relocatable: the
# .pc and the CMake package find the prefix from where they were installed.
set(HK_KIT_LIBDIR lib) # one path for pkg-config and CMake, whatever the arch
install(TARGETS hookd_testkit EXPORT hookdTargets COMPONENT testkit
        ARCHIVE DESTINATION ${HK_KIT_LIBDIR})
install(FILES include/hookd/testkit.h DESTINATION include/hookd COMPONENT testkit)
# The TCP fault proxy (tests/support/hkt_proxy.{c,h}, in the library through the
# tests/support glob): its header, included by testkit.h once installed, and
# hookd-proxy, the proxy driven over stdin.
install(FILES tests/support/hkt_proxy.h DESTINATION include/hookd/testkit RENAME proxy.h
        COMPONENT testkit)
install(TARGETS hookd-proxy RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT testkit)
configure_file(deploy/testkit/hookd-testkit.pc.in ${CMAKE_BINARY_DIR}/hookd-testkit.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/hookd-testkit.pc DESTINATION ${HK_KIT_LIBDIR}/pkgconfig
        COMPONENT testkit)
include(CMakePackageConfigHelpers)
configure_file(deploy/testkit/hookdConfig.cmake.in ${CMAKE_BINARY_DIR}/hookdConfig.cmake @ONLY)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/hookdConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(EXPORT hookdTargets NAMESPACE hookd:: DESTINATION ${HK_KIT_LIBDIR}/cmake/hookd
        COMPONENT testkit)
install(FILES ${CMAKE_BINARY_DIR}/hookdConfig.cmake ${CMAKE_BINARY_DIR}/hookdConfigVersion.cmake
        DESTINATION ${HK_KIT_LIBDIR}/cmake/hookd COMPONENT testkit)
install(PROGRAMS $<TARGET_FILE:hk-sink> DESTINATION ${CMAKE_INSTALL_BINDIR} RENAME hookd-sink
        COMPONENT testkit)
install(PROGRAMS $<TARGET_FILE:hk-mockkafka> DESTINATION libexec/hookd RENAME hookd-mockkafka
        COMPONENT testkit)
install(PROGRAMS scripts/kafka DESTINATION libexec/hookd COMPONENT testkit)
install(FILES scripts/kafka.pom.xml DESTINATION libexec/hookd COMPONENT testkit)
