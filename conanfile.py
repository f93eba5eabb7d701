from conan import ConanFile
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy


class MtlmConan(ConanFile):
    name = "mtlm"
    version = "0.1.0"
    license = "MIT"
    description = "Header-only C++20 library for compile-time configured multi-task language models"
    topics = ("nlp", "multi-task-learning", "header-only", "eigen")
    settings = "os", "arch", "compiler", "build_type"
    exports_sources = "CMakeLists.txt", "cmake/*", "include/*", "LICENSE"
    no_copy_source = True
    package_type = "header-library"

    def requirements(self):
        self.requires("eigen/3.4.0")
        self.requires("xtensor/0.24.3")

    def layout(self):
        cmake_layout(self)

    def generate(self):
        tc = CMakeToolchain(self)
        tc.variables["MTLM_BUILD_TESTS"] = False
        tc.variables["MTLM_BUILD_EXAMPLES"] = False
        tc.variables["MTLM_BUILD_BENCHMARKS"] = False
        tc.generate()
        CMakeDeps(self).generate()

    def package(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.install()
        copy(self, "LICENSE", self.source_folder, f"{self.package_folder}/licenses")

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "mtlm")
        self.cpp_info.set_property("cmake_target_name", "mtlm::mtlm")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []

    def package_id(self):
        self.info.clear()
