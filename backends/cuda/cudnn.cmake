# cuDNN for the CUDA profiler's convolutions (cudnn_conv.cpp), by BITPLAN_CUDNN: AUTO uses it
# when cudnn.h and libcudnn are found, ON requires them, OFF leaves them out (then
# cudnn_absent.cpp declines every cuDNN entry and says why). CUDNN_ROOT (variable or
# environment) names a folder with include/cudnn.h and lib/, e.g. the nvidia.cudnn Python
# package that PyTorch installs:
#   python3 -c 'import nvidia.cudnn; print(list(nvidia.cudnn.__path__)[0])'
# (a namespace package in the cu13 wheel: no __init__.py, so no __file__).
# Its lib/ holds libcudnn.so.9 only (no libcudnn.so link), so the library is found by that
# file name as well and linked by full path; CUDNN_ROOT is searched before the toolkit folders.
# Included by profiler.cmake.
set(BITPLAN_CUDNN "AUTO" CACHE STRING "cuDNN convolutions in the CUDA profiler: AUTO, ON (required), OFF")
set_property(CACHE BITPLAN_CUDNN PROPERTY STRINGS AUTO ON OFF)
set(CUDNN_ROOT "$ENV{CUDNN_ROOT}" CACHE PATH "folder with include/cudnn.h and lib/libcudnn.so*")

set(BITPLAN_CUDNN_FOUND OFF)
if(NOT BITPLAN_CUDNN STREQUAL "OFF")
  find_path(BITPLAN_CUDNN_INCLUDE cudnn_version.h HINTS ${CUDNN_ROOT} ${CUDAToolkit_INCLUDE_DIRS}
            PATH_SUFFIXES include)
  find_library(BITPLAN_CUDNN_LIBRARY NAMES cudnn libcudnn.so.9 NAMES_PER_DIR HINTS ${CUDNN_ROOT}
               ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64)
  set(why "")
  if(NOT BITPLAN_CUDNN_INCLUDE OR NOT EXISTS ${BITPLAN_CUDNN_INCLUDE}/cudnn.h)
    set(why "cudnn.h was not found")
  elseif(NOT BITPLAN_CUDNN_LIBRARY)
    set(why "libcudnn (libcudnn.so or libcudnn.so.9) was not found")
  else()
    file(STRINGS ${BITPLAN_CUDNN_INCLUDE}/cudnn_version.h version_lines
         REGEX "^#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) [0-9]+")
    string(REGEX REPLACE ".*CUDNN_MAJOR ([0-9]+).*" "\\1" cudnn_major "${version_lines}")
    string(REGEX REPLACE ".*CUDNN_MINOR ([0-9]+).*" "\\1" cudnn_minor "${version_lines}")
    string(REGEX REPLACE ".*CUDNN_PATCHLEVEL ([0-9]+).*" "\\1" cudnn_patch "${version_lines}")
    set(BITPLAN_CUDNN_VERSION "${cudnn_major}.${cudnn_minor}.${cudnn_patch}")
    if(cudnn_major LESS 9)
      set(why "cuDNN ${BITPLAN_CUDNN_VERSION} at ${BITPLAN_CUDNN_INCLUDE} is older than 9, the "
              "version whose convolution API cudnn_conv.cpp uses")
    endif()
  endif()
  if(why STREQUAL "")
    set(BITPLAN_CUDNN_FOUND ON)
    message(STATUS "bitplan: cuDNN convolutions ON (cuDNN ${BITPLAN_CUDNN_VERSION}, "
                   "${BITPLAN_CUDNN_LIBRARY})")
  elseif(BITPLAN_CUDNN STREQUAL "ON")
    message(FATAL_ERROR "bitplan: BITPLAN_CUDNN=ON but ${why} (CUDNN_ROOT='${CUDNN_ROOT}'): "
                        "set -DCUDNN_ROOT=DIR to a folder with include/cudnn.h and lib/libcudnn.so* "
                        "(on a PyTorch machine: python3 -c 'import nvidia.cudnn; "
                        "print(list(nvidia.cudnn.__path__)[0])'), or configure with "
                        "-DBITPLAN_CUDNN=OFF")
  else()
    message(STATUS "bitplan: cuDNN convolutions OFF (${why}; -DBITPLAN_CUDNN=ON makes this an error)")
  endif()
else()
  message(STATUS "bitplan: cuDNN convolutions OFF (BITPLAN_CUDNN=OFF)")
endif()

# Links `target` to cuDNN when found, else adds cudnn_absent.cpp to it.
function(bitplan_link_cudnn target)
  if(BITPLAN_CUDNN_FOUND)
    target_sources(${target} PRIVATE ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/cudnn_conv.cpp)
    target_include_directories(${target} SYSTEM PRIVATE ${BITPLAN_CUDNN_INCLUDE})
    target_link_libraries(${target} PUBLIC ${BITPLAN_CUDNN_LIBRARY})
  else()
    target_sources(${target} PRIVATE ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/cudnn_absent.cpp)
  endif()
endfunction()
