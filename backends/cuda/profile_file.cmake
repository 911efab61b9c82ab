# The CUDA profiler's profile file (profile_file.cpp) and its precisions (precision.cpp): host code that needs only
# nlohmann/json.hpp, the nlohmann_json package when found, otherwise the folder named by
# BITPLAN_EXTRA_INCLUDE. Included by backends/CMakeLists.txt whether or not the CUDA toolkit is
# found, so the unit tests check the file format on any machine, and by profiler.cmake.
include_guard(GLOBAL)
get_filename_component(BITPLAN_CUDA_REPO_ROOT ${CMAKE_CURRENT_LIST_DIR}/../.. ABSOLUTE)

# precision.cpp (the precisions and the activation types they read and write) goes with it:
# the cost model prices a CUDA profile's conversions by the same rule the profiler measured.
add_library(bitplan_cuda_profile_file STATIC ${CMAKE_CURRENT_LIST_DIR}/profile_file.cpp
                                             ${CMAKE_CURRENT_LIST_DIR}/precision.cpp
                                             ${CMAKE_CURRENT_LIST_DIR}/workloads.cpp)
target_include_directories(bitplan_cuda_profile_file PUBLIC ${BITPLAN_CUDA_REPO_ROOT})
target_compile_options(bitplan_cuda_profile_file PRIVATE -Wall -Wextra -Wpedantic)

# Links `target` to the header-only `package_target` where CMake found the package, or else
# adds the folder that holds `header` under BITPLAN_EXTRA_INCLUDE (the headers carried to a GPU
# machine, docs/cuda_backend.md); fails at configure time naming the header otherwise.
function(bitplan_header_only_dependency target scope package_target header debian_package)
  if(TARGET ${package_target})
    target_link_libraries(${target} ${scope} ${package_target})
    return()
  endif()
  string(MAKE_C_IDENTIFIER "BITPLAN_INCLUDE_${header}" folder)
  find_path(${folder} ${header} HINTS ${BITPLAN_EXTRA_INCLUDE})
  if(NOT ${folder})
    message(FATAL_ERROR "bitplan: ${target} needs ${header}: install ${debian_package} or copy "
                        "its headers into -DBITPLAN_EXTRA_INCLUDE=DIR (docs/cuda_backend.md)")
  endif()
  target_include_directories(${target} SYSTEM ${scope} ${${folder}})
endfunction()

bitplan_header_only_dependency(bitplan_cuda_profile_file PUBLIC nlohmann_json::nlohmann_json
                               nlohmann/json.hpp nlohmann-json3-dev)
