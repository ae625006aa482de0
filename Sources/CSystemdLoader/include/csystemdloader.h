#ifndef OPENCLAW_CSYSTEMDLOADER_H
#define OPENCLAW_CSYSTEMDLOADER_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// libsystemd, loaded when first needed (dlopen of libsystemd.so.0) instead of at exec: a
/// gateway that is not run by systemd — a refused duplicate above all, which must exit fast —
/// never maps it and its six libraries, and the loader has that much less to bind. Each wrapper
/// has the meaning and return values of the sd-daemon(3) function it names; when libsystemd
/// cannot be loaded they return -ENOSYS (openclaw_libsystemd_error() says why), except
/// openclaw_sd_notify, which returns 0 ("no service manager listens") as sd_notify does
/// without NOTIFY_SOCKET.

int openclaw_sd_listen_fds_with_names(int unset_environment, char ***names);
int openclaw_sd_is_socket(int fd, int family, int type, int listening);
int openclaw_sd_is_socket_inet(int fd, int family, int type, int listening, uint16_t port);
int openclaw_sd_notify(int unset_environment, const char *state);
int openclaw_sd_pid_notify_with_fds(pid_t pid, int unset_environment, const char *state, const int *fds, unsigned n_fds);
/// sd_notify_barrier(3): returns once the service manager has processed every message sent before.
int openclaw_sd_notify_barrier(uint64_t timeout_usec);
int openclaw_sd_watchdog_enabled(int unset_environment, uint64_t *usec);

/// sd_journal_sendv(3) with `n` (at most 32) "FIELD=value" strings: one journal entry with those
/// fields (MESSAGE=, PRIORITY=, MESSAGE_ID=, …).
int openclaw_sd_journal_send_fields(const char *const *fields, int n);

/// NULL once libsystemd is loaded; otherwise why it could not be (loads it if not tried yet).
const char *openclaw_libsystemd_error(void);

/// What systemd says, over D-Bus (the system bus, or the user bus for a user service), about the
/// unit this process runs in.
typedef struct {
    /// The unit, e.g. "openclaw-gateway.service" (empty when unknown).
    char unit[256];
    /// The type of the job pending on the unit: "restart", "stop", … ("" when there is none).
    char job_type[32];
    /// FileDescriptorStoreMax= of the service (0: no fd store).
    uint32_t fd_store_max;
    /// RestartForceExitStatus= of the service: bit (s % 8) of byte (s / 8) is set for each exit
    /// status s (0-255) after which systemd starts the service again, whatever Restart= says.
    uint8_t restart_force_status[32];
} openclaw_service_state;

/// Asks systemd (org.freedesktop.systemd1) about the unit of `pid`. Each call waits at most
/// `timeout_usec`. Returns 0, or a negative errno with `error` (of `error_len` bytes) saying
/// which step failed. sd-bus's calls are variadic, which Swift cannot call: hence C.
int openclaw_service_state_of(uint32_t pid, uint64_t timeout_usec, openclaw_service_state *out,
                              char *error, size_t error_len);

#endif
