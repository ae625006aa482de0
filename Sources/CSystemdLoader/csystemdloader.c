#include "csystemdloader.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

/* The functions used, with the types of <systemd/sd-daemon.h> and <systemd/sd-bus.h>. */
static struct {
    int (*listen_fds_with_names)(int, char ***);
    int (*is_socket)(int, int, int, int);
    int (*is_socket_inet)(int, int, int, int, uint16_t);
    int (*notify)(int, const char *);
    int (*pid_notify_with_fds)(pid_t, int, const char *, const int *, unsigned);
    int (*watchdog_enabled)(int, uint64_t *);
    int (*notify_barrier)(int, uint64_t);
    int (*bus_open)(sd_bus **);
    int (*bus_set_method_call_timeout)(sd_bus *, uint64_t);
    int (*bus_call_method)(sd_bus *, const char *, const char *, const char *, const char *, sd_bus_error *,
                           sd_bus_message **, const char *, ...);
    int (*bus_message_read)(sd_bus_message *, const char *, ...);
    int (*bus_message_enter_container)(sd_bus_message *, char, const char *);
    int (*bus_message_read_array)(sd_bus_message *, char, const void **, size_t *);
    sd_bus_message *(*bus_message_unref)(sd_bus_message *);
    int (*bus_get_property)(sd_bus *, const char *, const char *, const char *, const char *, sd_bus_error *,
                            sd_bus_message **, const char *);
    int (*bus_get_property_trivial)(sd_bus *, const char *, const char *, const char *, const char *,
                                    sd_bus_error *, char, void *);
    int (*bus_get_property_string)(sd_bus *, const char *, const char *, const char *, const char *,
                                   sd_bus_error *, char **);
    void (*bus_error_free)(sd_bus_error *);
    int (*bus_error_is_set)(const sd_bus_error *);
    sd_bus *(*bus_flush_close_unref)(sd_bus *);
    int (*journal_sendv)(const struct iovec *, int);
} sd;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_error[256];
static int loaded;

#define BIND(field, name)                                                                   \
    do {                                                                                   \
        *(void **)(&sd.field) = dlsym(handle, name);                                       \
        if (!sd.field) {                                                                   \
            snprintf(load_error, sizeof(load_error), "libsystemd.so.0 has no %s", name);   \
            return;                                                                        \
        }                                                                                  \
    } while (0)

static void load(void) {
    void *handle = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!handle) {
        const char *why = dlerror();
        snprintf(load_error, sizeof(load_error), "cannot load libsystemd.so.0: %s", why ? why : "unknown error");
        return;
    }
    BIND(listen_fds_with_names, "sd_listen_fds_with_names");
    BIND(is_socket, "sd_is_socket");
    BIND(is_socket_inet, "sd_is_socket_inet");
    BIND(notify, "sd_notify");
    BIND(pid_notify_with_fds, "sd_pid_notify_with_fds");
    BIND(watchdog_enabled, "sd_watchdog_enabled");
    BIND(notify_barrier, "sd_notify_barrier");
    BIND(bus_open, "sd_bus_open");
    BIND(bus_set_method_call_timeout, "sd_bus_set_method_call_timeout");
    BIND(bus_call_method, "sd_bus_call_method");
    BIND(bus_message_read, "sd_bus_message_read");
    BIND(bus_message_enter_container, "sd_bus_message_enter_container");
    BIND(bus_message_read_array, "sd_bus_message_read_array");
    BIND(bus_message_unref, "sd_bus_message_unref");
    BIND(bus_get_property, "sd_bus_get_property");
    BIND(bus_get_property_trivial, "sd_bus_get_property_trivial");
    BIND(bus_get_property_string, "sd_bus_get_property_string");
    BIND(bus_error_free, "sd_bus_error_free");
    BIND(bus_error_is_set, "sd_bus_error_is_set");
    BIND(bus_flush_close_unref, "sd_bus_flush_close_unref");
    BIND(journal_sendv, "sd_journal_sendv");
    loaded = 1;
}

static int ready(void) {
    pthread_once(&once, load);
    return loaded;
}

const char *openclaw_libsystemd_error(void) {
    return ready() ? NULL : load_error;
}

int openclaw_sd_listen_fds_with_names(int unset_environment, char ***names) {
    return ready() ? sd.listen_fds_with_names(unset_environment, names) : -ENOSYS;
}

int openclaw_sd_is_socket(int fd, int family, int type, int listening) {
    return ready() ? sd.is_socket(fd, family, type, listening) : -ENOSYS;
}

int openclaw_sd_is_socket_inet(int fd, int family, int type, int listening, uint16_t port) {
    return ready() ? sd.is_socket_inet(fd, family, type, listening, port) : -ENOSYS;
}

int openclaw_sd_notify(int unset_environment, const char *state) {
    if (!getenv("NOTIFY_SOCKET")) return 0; /* no service manager: nothing to load */
    return ready() ? sd.notify(unset_environment, state) : 0;
}

int openclaw_sd_pid_notify_with_fds(pid_t pid, int unset_environment, const char *state, const int *fds, unsigned n_fds) {
    if (!getenv("NOTIFY_SOCKET")) return 0;
    return ready() ? sd.pid_notify_with_fds(pid, unset_environment, state, fds, n_fds) : -ENOSYS;
}

int openclaw_sd_notify_barrier(uint64_t timeout_usec) {
    if (!getenv("NOTIFY_SOCKET")) return 0;
    return ready() ? sd.notify_barrier(0, timeout_usec) : -ENOSYS;
}

int openclaw_sd_watchdog_enabled(int unset_environment, uint64_t *usec) {
    if (!getenv("WATCHDOG_USEC")) return 0;
    return ready() ? sd.watchdog_enabled(unset_environment, usec) : -ENOSYS;
}

/* ---- the unit's pending job and fd store, over D-Bus */

static const char *DEST = "org.freedesktop.systemd1";

static int fail(char *error, size_t len, const char *step, int r, const sd_bus_error *e) {
    snprintf(error, len, "%s: %s", step, (e && sd.bus_error_is_set(e) && e->message) ? e->message : strerror(-r));
    return r;
}

int openclaw_service_state_of(uint32_t pid, uint64_t timeout_usec, openclaw_service_state *out,
                              char *error, size_t error_len) {
    memset(out, 0, sizeof(*out));
    if (!ready()) {
        snprintf(error, error_len, "%s", load_error);
        return -ENOSYS;
    }
    sd_bus *bus = NULL;
    sd_bus_error e = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    char *unit_path = NULL, *job_type = NULL, *unit_id = NULL;
    const char *path = NULL, *job_path = NULL;
    uint32_t job_id = 0;
    int r;

    r = sd.bus_open(&bus); /* the system bus, or the user bus under a user manager */
    if (r < 0) { fail(error, error_len, "cannot connect to the service manager's bus", r, NULL); goto done; }
    (void) sd.bus_set_method_call_timeout(bus, timeout_usec);

    r = sd.bus_call_method(bus, DEST, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
                           "GetUnitByPID", &e, &reply, "u", pid);
    if (r < 0) { fail(error, error_len, "GetUnitByPID", r, &e); goto done; }
    r = sd.bus_message_read(reply, "o", &path);
    if (r < 0) { fail(error, error_len, "GetUnitByPID reply", r, NULL); goto done; }
    unit_path = strdup(path);
    reply = sd.bus_message_unref(reply);
    if (!unit_path) { r = -ENOMEM; goto done; }

    r = sd.bus_get_property_string(bus, DEST, unit_path, "org.freedesktop.systemd1.Unit", "Id", &e, &unit_id);
    if (r < 0) { fail(error, error_len, "Unit.Id", r, &e); goto done; }
    snprintf(out->unit, sizeof(out->unit), "%s", unit_id);

    r = sd.bus_get_property_trivial(bus, DEST, unit_path, "org.freedesktop.systemd1.Service",
                                    "FileDescriptorStoreMax", &e, 'u', &out->fd_store_max);
    if (r < 0) { fail(error, error_len, "Service.FileDescriptorStoreMax", r, &e); goto done; }

    /* RestartForceExitStatus=: (exit statuses, signals); only the statuses are kept */
    r = sd.bus_get_property(bus, DEST, unit_path, "org.freedesktop.systemd1.Service", "RestartForceExitStatus", &e,
                            &reply, "(aiai)");
    if (r < 0) { fail(error, error_len, "Service.RestartForceExitStatus", r, &e); goto done; }
    r = sd.bus_message_enter_container(reply, 'r', "aiai");
    if (r < 0) { fail(error, error_len, "Service.RestartForceExitStatus reply", r, NULL); goto done; }
    const void *statuses = NULL;
    size_t statuses_size = 0;
    r = sd.bus_message_read_array(reply, 'i', &statuses, &statuses_size);
    if (r < 0) { fail(error, error_len, "Service.RestartForceExitStatus reply", r, NULL); goto done; }
    for (size_t i = 0; i < statuses_size / sizeof(int32_t); i++) {
        int32_t status;
        memcpy(&status, (const char *)statuses + i * sizeof(int32_t), sizeof(status));
        if (status >= 0 && status < 256) out->restart_force_status[status / 8] |= (uint8_t)(1u << (status % 8));
    }
    reply = sd.bus_message_unref(reply);

    r = sd.bus_get_property(bus, DEST, unit_path, "org.freedesktop.systemd1.Unit", "Job", &e, &reply, "(uo)");
    if (r < 0) { fail(error, error_len, "Unit.Job", r, &e); goto done; }
    r = sd.bus_message_read(reply, "(uo)", &job_id, &job_path);
    if (r < 0) { fail(error, error_len, "Unit.Job reply", r, NULL); goto done; }
    if (job_id != 0) {
        r = sd.bus_get_property_string(bus, DEST, job_path, "org.freedesktop.systemd1.Job", "JobType", &e, &job_type);
        if (r < 0) { fail(error, error_len, "Job.JobType", r, &e); goto done; }
        snprintf(out->job_type, sizeof(out->job_type), "%s", job_type);
    }
    r = 0;
done:
    free(job_type);
    free(unit_id);
    free(unit_path);
    sd.bus_message_unref(reply);
    sd.bus_error_free(&e);
    sd.bus_flush_close_unref(bus);
    return r;
}

int openclaw_sd_journal_send_fields(const char *const *fields, int n) {
    if (!ready()) return -ENOSYS;
    struct iovec iov[32];
    if (n > 32) n = 32;
    for (int i = 0; i < n; i++) {
        iov[i].iov_base = (void *)fields[i];
        iov[i].iov_len = strlen(fields[i]);
    }
    return sd.journal_sendv(iov, n);
}
