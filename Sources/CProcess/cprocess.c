#define _GNU_SOURCE
#include "cprocess.h"
#include <sys/syscall.h>
#include <unistd.h>

int openclaw_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}
