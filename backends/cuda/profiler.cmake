# The CUDA latency profiler: library bitplan_cuda_profiler, executables bitplan-cuda-profile
# and bitplan-cuda-w4a16-sweep. Included by this folder's CMakeLists.txt (full bitplan build) and by
# standalone/CMakeLists.txt (GPU machines with only the CUDA toolkit). It needs CUDA::cudart,
# CUDA::cublasLt, optionally cuDNN (cudnn.cmake: BITPLAN_CUDNN, CUDNN_ROOT) and two
# header-only libraries, nlohmann/json.hpp (profile_file.cmake) and
# CLI11 (CLI/CLI.hpp): their packages when found, otherwise the folder named by
# BITPLAN_EXTRA_INCLUDE.
set(BITPLAN_CUDA_SOURCE_DIR ${CMAKE_CURRENT_LIST_DIR})
include(${CMAKE_CURRENT_LIST_DIR}/profile_file.cmake)

add_library(bitplan_cuda_profiler STATIC
  ${BITPLAN_CUDA_SOURCE_DIR}/gemm.cpp
  ${BITPLAN_CUDA_SOURCE_DIR}/runtime.cpp
  ${BITPLAN_CUDA_SOURCE_DIR}/layers.cpp
  ${BITPLAN_CUDA_SOURCE_DIR}/profiler.cpp
  ${BITPLAN_CUDA_SOURCE_DIR}/kernels.cu
  ${BITPLAN_CUDA_SOURCE_DIR}/w4a16.cu
  ${BITPLAN_CUDA_SOURCE_DIR}/w4a16_decode.cu
  ${BITPLAN_CUDA_SOURCE_DIR}/w8a16.cu)
target_link_libraries(bitplan_cuda_profiler PUBLIC bitplan_cuda_profile_file CUDA::cudart
                      CUDA::cublasLt ${CMAKE_DL_LIBS})
include(${BITPLAN_CUDA_SOURCE_DIR}/cudnn.cmake)
bitplan_link_cudnn(bitplan_cuda_profiler)
# nvcc takes host warnings through -Xcompiler; -Wpedantic stays off there because nvcc's
# generated host stubs trip it.
target_compile_options(bitplan_cuda_profiler PRIVATE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra -lineinfo>)
# CMake 3.25 knows no C++20 flag for nvcc 13; the kernels need only C++17.
set_target_properties(bitplan_cuda_profiler PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON)

# The command line is parsed with CLI11 rather than Boost.Program_options (the bitplan CLI's):
# Program_options is a compiled library, CLI11 is headers only and so travels to GPU machines
# the way nlohmann/json.hpp does.
add_executable(bitplan-cuda-profile ${BITPLAN_CUDA_SOURCE_DIR}/profile_main.cpp)
target_link_libraries(bitplan-cuda-profile PRIVATE bitplan_cuda_profiler)
target_compile_options(bitplan-cuda-profile PRIVATE -Wall -Wextra -Wpedantic)
find_package(CLI11 CONFIG QUIET)
bitplan_header_only_dependency(bitplan-cuda-profile PRIVATE CLI11::CLI11 CLI/CLI.hpp libcli11-dev)

# Issue 15's W4A16 decode-kernel sweep (w4a16_sweep.cu): times every decode variant of
# w4a16_decode.cu against the tile kernel and cuBLASLt fp16; run_on_gpu.sh's `sweep` stage.
add_executable(bitplan-cuda-w4a16-sweep ${BITPLAN_CUDA_SOURCE_DIR}/w4a16_sweep.cu)
target_link_libraries(bitplan-cuda-w4a16-sweep PRIVATE bitplan_cuda_profiler)
target_compile_options(bitplan-cuda-w4a16-sweep PRIVATE -Xcompiler=-Wall,-Wextra)
set_target_properties(bitplan-cuda-w4a16-sweep PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON)
