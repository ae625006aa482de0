#ifndef OPENCLAW_CPROCESS_H
#define OPENCLAW_CPROCESS_H
#include <sys/types.h>

/// pidfd_open(2): a file descriptor that becomes readable when the process exits (-1 + errno on
/// failure). syscall(2) is variadic and cannot be called from Swift.
int openclaw_pidfd_open(pid_t pid);

#endif
