# GPU-machine build (HASHATTN_GPU_CHECK=ON, used by scripts/gpu-check; CI builds it too, with
# `scripts/gpu-check DIR --build-only`): the library from the modules the CUDA backend and its tests need, the cuda
# tests, the CUDA benchmarks and the CUDA examples. Assumes only a CUDA toolkit and a C++ compiler:
#   GoogleTest: an installed package, else the source tree in HASHATTN_GTEST_SOURCE.
#   Highway (src/cpu, tests/common): an installed package, else HASHATTN_HWY_ROOT/{include,lib}.
#   OpenMP (the compiler's); CBLAS if installed, else a plain-loop sgemm (cmake/gpu-check-shim).
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
if(NOT CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90)
endif()
find_package(CUDAToolkit REQUIRED)
set(HASHATTN_CUDA ON)

find_package(hwy QUIET)
if(NOT hwy_FOUND)
  if(NOT HASHATTN_HWY_ROOT OR NOT EXISTS ${HASHATTN_HWY_ROOT}/include/hwy/highway.h)
    message(FATAL_ERROR "Highway: no package found and HASHATTN_HWY_ROOT='${HASHATTN_HWY_ROOT}' has no include/hwy")
  endif()
  file(GLOB _hwy_lib ${HASHATTN_HWY_ROOT}/lib/libhwy.so*)
  list(GET _hwy_lib 0 _hwy_lib)
  add_library(hwy::hwy SHARED IMPORTED)
  set_target_properties(hwy::hwy PROPERTIES IMPORTED_LOCATION ${_hwy_lib}
                        INTERFACE_INCLUDE_DIRECTORIES ${HASHATTN_HWY_ROOT}/include)
endif()
find_package(OpenMP REQUIRED COMPONENTS CXX)

# The modules below the policies (docs/ARCHITECTURE.md): core, gguf, ref, cpu, backend, cuda, and the
# hash weights (tests/common); none of them needs a Debian package beyond Highway and a CBLAS.
file(GLOB _gc_src CONFIGURE_DEPENDS
     ${CMAKE_SOURCE_DIR}/src/core/*.cpp ${CMAKE_SOURCE_DIR}/src/gguf/*.cpp ${CMAKE_SOURCE_DIR}/src/ref/*.cpp
     ${CMAKE_SOURCE_DIR}/src/cpu/*.cpp ${CMAKE_SOURCE_DIR}/src/backend/*.cpp
     ${CMAKE_SOURCE_DIR}/src/cuda/*.cu ${CMAKE_SOURCE_DIR}/src/cuda/*.cpp ${CMAKE_SOURCE_DIR}/src/cuda/host/*.cpp
     ${CMAKE_SOURCE_DIR}/src/hash/hash-weights.cpp)
find_path(HASHATTN_CBLAS_INCLUDE cblas.h PATH_SUFFIXES openblas)
find_library(HASHATTN_CBLAS_LIB NAMES openblas cblas)
set(_gc_blas_inc)
set(_gc_blas_lib)
if(HASHATTN_CBLAS_INCLUDE AND HASHATTN_CBLAS_LIB)
  set(_gc_blas_inc ${HASHATTN_CBLAS_INCLUDE})
  set(_gc_blas_lib ${HASHATTN_CBLAS_LIB})
else()
  message(STATUS "gpu-check: no CBLAS found; linking the plain-loop sgemm of cmake/gpu-check-shim")
  enable_language(C)
  set(_gc_blas_inc ${CMAKE_SOURCE_DIR}/cmake/gpu-check-shim)
  list(APPEND _gc_src ${CMAKE_SOURCE_DIR}/cmake/gpu-check-shim/cblas-shim.c)
endif()
add_library(hashattn STATIC ${_gc_src})
target_include_directories(hashattn PUBLIC ${CMAKE_SOURCE_DIR}/include PRIVATE ${CMAKE_SOURCE_DIR}/src ${_gc_blas_inc})
target_compile_definitions(hashattn PUBLIC HASHATTN_HAVE_CUDA=1)
target_link_libraries(hashattn PUBLIC CUDA::cudart CUDA::cublas OpenMP::OpenMP_CXX hwy::hwy ${_gc_blas_lib})
target_compile_options(hashattn PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo -Xptxas=-v>)

enable_testing()
find_package(GTest QUIET)
if(NOT GTest_FOUND)
  if(NOT HASHATTN_GTEST_SOURCE OR NOT EXISTS ${HASHATTN_GTEST_SOURCE}/CMakeLists.txt)
    message(FATAL_ERROR "GoogleTest: no package found and HASHATTN_GTEST_SOURCE='${HASHATTN_GTEST_SOURCE}' "
                        "is not a source tree (hint: scripts/gpu-check looks in third_party-src/googletest)")
  endif()
  set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
  set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
  add_subdirectory(${HASHATTN_GTEST_SOURCE} ${CMAKE_BINARY_DIR}/googletest EXCLUDE_FROM_ALL)
  add_library(GTest::gtest ALIAS gtest)
  add_library(GTest::gtest_main ALIAS gtest_main)
endif()
include(GoogleTest)

file(GLOB HASHATTN_TEST_COMMON CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/common/*.cpp)
# the tiny models need the model module, which this configuration does not build
list(FILTER HASHATTN_TEST_COMMON EXCLUDE REGEX "tiny-model\\.cpp$")
file(GLOB _gc_test_dirs LIST_DIRECTORIES true ${CMAKE_SOURCE_DIR}/tests/*)
foreach(dir ${_gc_test_dirs})
  get_filename_component(mod ${dir} NAME)
  file(GLOB _cu CONFIGURE_DEPENDS ${dir}/*-test.cu)
  # tests/gpu needs the model module (the full build, preset cuda), not this one
  if(NOT IS_DIRECTORY ${dir} OR NOT _cu OR mod STREQUAL "gpu")
    continue()
  endif()
  set(t test-${mod}-cuda)
  add_executable(${t} ${_cu} ${HASHATTN_TEST_COMMON})
  set_target_properties(${t} PROPERTIES CXX_STANDARD 20)
  target_include_directories(${t} PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR}/tests)
  target_link_libraries(${t} PRIVATE hashattn GTest::gtest GTest::gtest_main hwy::hwy)
  target_compile_definitions(${t} PRIVATE HASHATTN_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  gtest_discover_tests(${t} DISCOVERY_MODE PRE_TEST PROPERTIES LABELS cuda
                       WORKING_DIRECTORY ${CMAKE_SOURCE_DIR} DISCOVERY_TIMEOUT 60)
endforeach()

file(GLOB _gc_bench CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/bench/*.cu)
foreach(src ${_gc_bench})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(${name} PRIVATE hashattn CUDA::cudart)
endforeach()

file(GLOB _gc_examples CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/examples/*.cu)
foreach(src ${_gc_examples})
  get_filename_component(name ${src} NAME_WE)
  add_executable(example-${name} ${src})
  target_link_libraries(example-${name} PRIVATE hashattn)
endforeach()
