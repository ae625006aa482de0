#ifndef OPENCLAW_CSYSTEMD_SHIM_H
#define OPENCLAW_CSYSTEMD_SHIM_H
#include <systemd/sd-daemon.h>
#endif
