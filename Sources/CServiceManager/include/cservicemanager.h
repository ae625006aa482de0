#ifndef OPENCLAW_CSERVICEMANAGER_H
#define OPENCLAW_CSERVICEMANAGER_H
#include <stddef.h>
#include <stdint.h>

/// What systemd says, over D-Bus (the system bus, or the user bus for a user service), about the
/// unit this process runs in.
typedef struct {
    /// The unit, e.g. "openclaw-gateway.service" (empty when unknown).
    char unit[256];
    /// The type of the job pending on the unit: "restart", "stop", … ("" when there is none).
    char job_type[32];
    /// FileDescriptorStoreMax= of the service (0: no fd store).
    uint32_t fd_store_max;
} openclaw_service_state;

/// Asks systemd (org.freedesktop.systemd1 on the system bus) about the unit of `pid`. Each call
/// waits at most `timeout_usec`. Returns 0, or a negative errno with `error` (of `error_len`
/// bytes) saying which step failed. sd-bus's calls are variadic, which Swift cannot call: hence C.
int openclaw_service_state_of(uint32_t pid, uint64_t timeout_usec, openclaw_service_state *out,
                              char *error, size_t error_len);

#endif
