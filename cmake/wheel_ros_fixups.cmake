# Fix-ups for building against ROS 2 installed from PyPI wheels (ros-jazzy-* on PyPI).
#
# The wheels' exported CMake targets (<pkg>::<pkg>__rosidl_generator_py) carry
# INTERFACE_INCLUDE_DIRECTORIES of the machine the wheels were built on
# (/opt/python/cp311-cp311/...). CMake's generate step refuses imported targets whose include
# directories do not exist. This drops the non-existent entries from every imported target of
# this directory, which needs no root and changes nothing for a ROS install from apt (there all
# directories exist, so nothing is removed).

function(snn_fusion_drop_missing_include_dirs)
  get_directory_property(_targets IMPORTED_TARGETS)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_kept "")
    set(_dropped FALSE)
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^\\$<" OR EXISTS "${_dir}")
        list(APPEND _kept "${_dir}")
      else()
        set(_dropped TRUE)
        message(STATUS "snn_fusion_ros: dropping missing include dir ${_dir} from ${_target}")
      endif()
    endforeach()
    if(_dropped)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
    endif()
  endforeach()
endfunction()
