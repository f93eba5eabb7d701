# Header-only: configure without tests/examples/benchmarks, install headers and the CMake package.
vcpkg_from_github(
  OUT_SOURCE_PATH SOURCE_PATH
  REPO mtlm/mtlm
  REF "v${VERSION}"
  SHA512 0
  HEAD_REF main
)
set(VCPKG_BUILD_TYPE release)
vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS -DMTLM_BUILD_TESTS=OFF -DMTLM_BUILD_EXAMPLES=OFF -DMTLM_BUILD_BENCHMARKS=OFF
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH share/mtlm/cmake)
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/lib" "${CURRENT_PACKAGES_DIR}/debug")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
