#include "cservicemanager.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>

static const char *DEST = "org.freedesktop.systemd1";

static int fail(char *error, size_t len, const char *step, int r, const sd_bus_error *e) {
    snprintf(error, len, "%s: %s", step, (e && sd_bus_error_is_set(e) && e->message) ? e->message : strerror(-r));
    return r;
}

int openclaw_service_state_of(uint32_t pid, uint64_t timeout_usec, openclaw_service_state *out,
                              char *error, size_t error_len) {
    sd_bus *bus = NULL;
    sd_bus_error e = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    char *unit_path = NULL, *job_type = NULL, *unit_id = NULL;
    const char *path = NULL, *job_path = NULL;
    uint32_t job_id = 0;
    int r;

    memset(out, 0, sizeof(*out));
    r = sd_bus_open(&bus);  /* the system bus, or the user bus under a user manager */
    if (r < 0) { fail(error, error_len, "cannot connect to the service manager's bus", r, NULL); goto done; }
    (void) sd_bus_set_method_call_timeout(bus, timeout_usec);

    r = sd_bus_call_method(bus, DEST, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
                           "GetUnitByPID", &e, &reply, "u", pid);
    if (r < 0) { fail(error, error_len, "GetUnitByPID", r, &e); goto done; }
    r = sd_bus_message_read(reply, "o", &path);
    if (r < 0) { fail(error, error_len, "GetUnitByPID reply", r, NULL); goto done; }
    unit_path = strdup(path);
    reply = sd_bus_message_unref(reply);
    if (!unit_path) { r = -ENOMEM; goto done; }

    r = sd_bus_get_property_string(bus, DEST, unit_path, "org.freedesktop.systemd1.Unit", "Id", &e, &unit_id);
    if (r < 0) { fail(error, error_len, "Unit.Id", r, &e); goto done; }
    snprintf(out->unit, sizeof(out->unit), "%s", unit_id);

    r = sd_bus_get_property_trivial(bus, DEST, unit_path, "org.freedesktop.systemd1.Service",
                                    "FileDescriptorStoreMax", &e, 'u', &out->fd_store_max);
    if (r < 0) { fail(error, error_len, "Service.FileDescriptorStoreMax", r, &e); goto done; }

    r = sd_bus_get_property(bus, DEST, unit_path, "org.freedesktop.systemd1.Unit", "Job", &e, &reply, "(uo)");
    if (r < 0) { fail(error, error_len, "Unit.Job", r, &e); goto done; }
    r = sd_bus_message_read(reply, "(uo)", &job_id, &job_path);
    if (r < 0) { fail(error, error_len, "Unit.Job reply", r, NULL); goto done; }
    if (job_id != 0) {
        r = sd_bus_get_property_string(bus, DEST, job_path, "org.freedesktop.systemd1.Job", "JobType", &e, &job_type);
        if (r < 0) { fail(error, error_len, "Job.JobType", r, &e); goto done; }
        snprintf(out->job_type, sizeof(out->job_type), "%s", job_type);
    }
    r = 0;
done:
    free(job_type);
    free(unit_id);
    free(unit_path);
    sd_bus_message_unref(reply);
    sd_bus_error_free(&e);
    sd_bus_flush_close_unref(bus);
    return r;
}
