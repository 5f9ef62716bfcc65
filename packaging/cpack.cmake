# Install layout and Debian package (CPack DEB) for Strand.
#
# Include it from the top-level CMakeLists.txt, after add_subdirectory(app), as its last line:
#     include(packaging/cpack.cmake)
# Then:  cmake --build build && (cd build && cpack -G DEB)   ->  strand_<version>_<arch>.deb
# (or: cmake --install build --prefix /tmp/strand-root to inspect the layout).
#
# Layout (FHS, prefix /usr in the package):
#   bin/strand-app, bin/strand-cli
#   share/applications/io.strand.Strand.desktop
#   share/metainfo/io.strand.Strand.metainfo.xml
#   share/icons/hicolor/scalable/apps/io.strand.Strand.svg
#   share/strand/models/*.safetensors     (found by strand-app via <bindir>/../share/strand/models;
#                                          the bundled model and the text encoder it names)
include(GNUInstallDirs)

set(STRAND_APP_ID io.strand.Strand)

# strand-app installs itself (app/desktop/CMakeLists.txt); the CLI is installed here so that the
# package always carries it.
if(TARGET strand-cli)
  install(TARGETS strand-cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

if(TARGET strand-app)
  install(FILES ${CMAKE_SOURCE_DIR}/packaging/strand.desktop
          DESTINATION ${CMAKE_INSTALL_DATADIR}/applications RENAME ${STRAND_APP_ID}.desktop)
  install(FILES ${CMAKE_SOURCE_DIR}/packaging/${STRAND_APP_ID}.metainfo.xml
          DESTINATION ${CMAKE_INSTALL_DATADIR}/metainfo)
  install(FILES ${CMAKE_SOURCE_DIR}/resources/icons/strand.svg
          DESTINATION ${CMAKE_INSTALL_DATADIR}/icons/hicolor/scalable/apps RENAME ${STRAND_APP_ID}.svg)
endif()

# The bundled model(s), if present in the source tree at configure time.
file(GLOB STRAND_BUNDLED_MODELS ${CMAKE_SOURCE_DIR}/resources/models/*.safetensors)
if(STRAND_BUNDLED_MODELS)
  install(FILES ${STRAND_BUNDLED_MODELS} DESTINATION ${CMAKE_INSTALL_DATADIR}/strand/models)
else()
  message(STATUS "Strand packaging: no bundled model in resources/models/ (package will lack it)")
endif()
# The text encoder the bundled model names (text.encoder_file), converted by ./strand setup into
# .deps/models/; installed next to the model, where Model::load looks first.
file(GLOB STRAND_TEXT_ENCODERS ${CMAKE_SOURCE_DIR}/.deps/models/text-encoder-*.safetensors)
if(STRAND_TEXT_ENCODERS)
  install(FILES ${STRAND_TEXT_ENCODERS} DESTINATION ${CMAKE_INSTALL_DATADIR}/strand/models)
elseif(STRAND_BUNDLED_MODELS)
  message(STATUS "Strand packaging: no text encoder in .deps/models/ (run ./strand setup first; "
                 "the package's model will not load without it)")
endif()

# --- CPack: one .deb ---
set(CPACK_PACKAGE_NAME strand)
set(CPACK_PACKAGE_VENDOR "Strand developers")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Interactive long-video generation")
set(CPACK_PACKAGE_DESCRIPTION
    "Strand generates video block by block with an autoregressive diffusion model whose memory of the past has a fixed size. Desktop app (Qt 6) and command-line tool.")
set(CPACK_PACKAGE_HOMEPAGE_URL "https://strand.io")
set(CPACK_PACKAGE_CONTACT "Strand developers <dev@strand.io>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION video)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Runtime dependencies from the binaries' shared libraries (dpkg-shlibdeps), so Qt, FFmpeg and
# OpenBLAS versions follow whatever the package was built against.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)

include(CPack)
