#ifndef OPENCLAW_CSYSTEMD_SHIM_H
#define OPENCLAW_CSYSTEMD_SHIM_H
/* libsystemd's API (libsystemd-dev). No `link` in the module map: the library is opened with
 * dlopen when first needed, by CSystemdLoader, whose wrappers are what the Swift code calls. A
 * direct call to an sd_* function from Swift fails to link, on purpose. */
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#endif
