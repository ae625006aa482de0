#define _GNU_SOURCE
#include "cprocess.h"
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/mman.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int openclaw_memfd_create(const char *name) {
    return memfd_create(name, MFD_CLOEXEC);
}

int openclaw_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* A NETLINK_SOCK_DIAG request for the TCP sockets of `family` in `states` (a bit per TCP state). */
struct openclaw_tcp_diag_request {
    struct nlmsghdr header;
    struct inet_diag_req_v2 request;
};

static struct openclaw_tcp_diag_request openclaw_tcp_diag(int family, unsigned short flags, unsigned int states) {
    struct openclaw_tcp_diag_request message;
    memset(&message, 0, sizeof(message));
    message.header.nlmsg_len = sizeof(message);
    message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    message.header.nlmsg_flags = flags;
    message.request.sdiag_family = (unsigned char)family;
    message.request.sdiag_protocol = IPPROTO_TCP;
    message.request.idiag_states = states;
    return message;
}

int openclaw_tcp_listeners(int port, unsigned long long *inodes, unsigned int *uids, int max) {
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return -errno;
    int count = 0;
    const int families[2] = {AF_INET, AF_INET6};
    for (int f = 0; f < 2; f++) {
        struct openclaw_tcp_diag_request message =
            openclaw_tcp_diag(families[f], NLM_F_REQUEST | NLM_F_DUMP, 1 << 10 /* TCP_LISTEN */);
        if (send(fd, &message, sizeof(message), 0) < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        int done = 0;
        while (!done) {
            char buffer[16384];
            ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
            if (n <= 0) {
                int e = n < 0 ? errno : EIO;
                close(fd);
                return -e;
            }
            for (struct nlmsghdr *h = (struct nlmsghdr *)buffer; NLMSG_OK(h, (unsigned int)n); h = NLMSG_NEXT(h, n)) {
                if (h->nlmsg_type == NLMSG_DONE) { done = 1; break; }
                if (h->nlmsg_type == NLMSG_ERROR) {
                    struct nlmsgerr *error = NLMSG_DATA(h);
                    close(fd);
                    return error->error < 0 ? error->error : -EIO;
                }
                struct inet_diag_msg *m = NLMSG_DATA(h);
                if (ntohs(m->id.idiag_sport) == port && count < max) {
                    inodes[count] = m->idiag_inode;
                    uids[count] = m->idiag_uid;
                    count++;
                }
            }
        }
    }
    close(fd);
    return count;
}

/* The entries of an open directory, through getdents64(2) straight into `buffer` (no DIR, so no
 * fstat and fcntl per directory). Calls `each` with every name; stops when it returns nonzero.
 * Returns that value, 0 at the end, or -errno. */
static int each_entry(int dir, char *buffer, size_t size, int (*each)(const char *, void *), void *context) {
    for (;;) {
        ssize_t n = getdents64(dir, buffer, size);
        if (n < 0) return -errno;
        if (n == 0) return 0;
        for (ssize_t offset = 0; offset < n;) {
            struct dirent64 *entry = (struct dirent64 *)(buffer + offset);
            offset += entry->d_reclen;
            int r = each(entry->d_name, context);
            if (r) return r;
        }
        /* procfs fills the buffer while entries remain: one that left room for several more was
         * the whole directory, and the call that would return 0 can be spared. */
        if ((size_t)n + 1024 <= size) return 0;
    }
}

struct fd_scan {
    int fds;
    const char (*targets)[40];
    const int *lengths;
    int n_targets;
};

/* 1: this fd is one of the sockets; 2: this process cannot be inspected (stop); 0: go on. */
static int check_fd(const char *name, void *context) {
    struct fd_scan *scan = context;
    if (name[0] < '0' || name[0] > '9') return 0;
    char link[64];
    ssize_t n = readlinkat(scan->fds, name, link, sizeof(link));
    if (n < 0) return errno == EACCES || errno == EPERM ? 2 : 0;
    if (n < 8 || memcmp(link, "socket:[", 8) != 0) return 0;
    for (int i = 0; i < scan->n_targets; i++) {
        if (n == scan->lengths[i] && memcmp(link, scan->targets[i], (size_t)n) == 0) return 1;
    }
    return 0;
}

struct pid_list {
    int *pids;
    int count;
    int capacity;
};

/* The pids in /proc, as they come (ascending). */
static int collect_pid(const char *name, void *context) {
    struct pid_list *list = context;
    if (name[0] < '1' || name[0] > '9') return 0;
    if (list->count >= list->capacity) return 1; /* full */
    list->pids[list->count++] = atoi(name);
    return 0;
}

/* Whether process `pid` has an fd on one of the sockets: 1 yes, 0 no (or not inspectable). */
static int holds(int proc, int pid, struct fd_scan *scan, char *buffer, size_t size) {
    char path[32];
    snprintf(path, sizeof(path), "%d/fd", pid);
    int fds = openat(proc, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fds < 0) return 0; /* gone, or not ours to inspect */
    scan->fds = fds;
    int r = each_entry(fds, buffer, size, check_fd, scan);
    close(fds);
    return r == 1;
}

int openclaw_socket_holders(const unsigned long long *inodes, int n_inodes, int *pids, int max, int first_only) {
    char targets[64][40];
    int lengths[64];
    if (n_inodes > 64) n_inodes = 64;
    for (int i = 0; i < n_inodes; i++) lengths[i] = snprintf(targets[i], sizeof(targets[i]), "socket:[%llu]", inodes[i]);
    struct fd_scan scan = { .fds = -1, .targets = (const char (*)[40])targets, .lengths = lengths, .n_targets = n_inodes };
    struct pid_list all = { .pids = malloc(sizeof(int) * (1 << 16)), .count = 0, .capacity = 1 << 16 };
    char *buffer = malloc(32768);
    if (!all.pids || !buffer) { free(all.pids); free(buffer); return -ENOMEM; }
    int proc = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (proc < 0) { int e = errno; free(all.pids); free(buffer); return -e; }
    int r = each_entry(proc, buffer, 32768, collect_pid, &all);
    int count = 0;
    if (r >= 0 && !first_only) {
        for (int i = 0; i < all.count && count < max; i++) {
            if (holds(proc, all.pids[i], &scan, buffer, 32768)) pids[count++] = all.pids[i];
        }
    } else if (r >= 0) {
        /* Newest first, stopping at the first holder; then PID 1, for a socket systemd holds. */
        int self = getpid();
        for (int i = all.count - 1; i >= 0 && count < max; i--) {
            int pid = all.pids[i];
            if (pid == 1 || pid == self) continue;
            if (holds(proc, pid, &scan, buffer, 32768)) { pids[count++] = pid; break; }
        }
        if (count < max && holds(proc, 1, &scan, buffer, 32768)) pids[count++] = 1;
    }
    close(proc);
    free(all.pids);
    free(buffer);
    return r < 0 ? r : count;
}

int openclaw_tcp_socket_uid(int family, const void *source, int source_port, const void *destination, int destination_port, unsigned int *uid) {
    if (family != AF_INET && family != AF_INET6) return -EAFNOSUPPORT;
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return -errno;
    /* one socket, found by its four-tuple: no dump */
    struct openclaw_tcp_diag_request message = openclaw_tcp_diag(family, NLM_F_REQUEST, ~0U);
    size_t length = family == AF_INET ? 4 : 16;
    memcpy(message.request.id.idiag_src, source, length);
    memcpy(message.request.id.idiag_dst, destination, length);
    message.request.id.idiag_sport = htons((unsigned short)source_port);
    message.request.id.idiag_dport = htons((unsigned short)destination_port);
    message.request.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    message.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (send(fd, &message, sizeof(message), 0) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    char buffer[8192];
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    int e = errno;
    close(fd);
    if (n <= 0) return n < 0 ? -e : -EIO;
    struct nlmsghdr *h = (struct nlmsghdr *)buffer;
    if (!NLMSG_OK(h, (unsigned int)n)) return -EIO;
    if (h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *error = NLMSG_DATA(h);
        return error->error < 0 ? error->error : -EIO;
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) return -EIO;
    struct inet_diag_msg *m = NLMSG_DATA(h);
    *uid = m->idiag_uid;
    return 0;
}

/* SIGHUP's sender, passed from the handler through a pipe (write(2) is async-signal-safe). */
static int openclaw_hangup_pipe[2] = {-1, -1};

static void openclaw_on_hangup(int signal, siginfo_t *info, void *context) {
    (void)signal;
    (void)context;
    int saved = errno;
    int record[3] = {(int)info->si_pid, info->si_code, info->si_code == SI_QUEUE ? info->si_value.sival_int : 0};
    ssize_t ignored = write(openclaw_hangup_pipe[1], record, sizeof(record));
    (void)ignored;
    errno = saved;
}

int openclaw_install_hangups(void) {
    if (openclaw_hangup_pipe[0] >= 0) return openclaw_hangup_pipe[0];
    if (pipe2(openclaw_hangup_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return -errno;
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = openclaw_on_hangup;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGHUP, &action, NULL) != 0) return -errno;
    return openclaw_hangup_pipe[0];
}

int openclaw_read_hangup(int fd, int *pid, int *code, int *value) {
    int record[3];
    ssize_t n = read(fd, record, sizeof(record));
    if (n < 0) return errno == EAGAIN ? 0 : -errno;
    if (n != sizeof(record)) return n == 0 ? 0 : -EIO;
    *pid = record[0];
    *code = record[1];
    *value = record[2];
    return 1;
}

int openclaw_queue_signal(int pid, int signal, int value) {
    union sigval v;
    v.sival_int = value;
    return sigqueue(pid, signal, v) == 0 ? 0 : -errno;
}

int openclaw_block_signal(int signal) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signal);
    return -pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int openclaw_wait_signal_from(int signal, int pid, int timeout_ms, int *value) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signal);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) { deadline.tv_sec += 1; deadline.tv_nsec -= 1000000000L; }
    for (;;) {
        struct timespec now, left;
        clock_gettime(CLOCK_MONOTONIC, &now);
        left.tv_sec = deadline.tv_sec - now.tv_sec;
        left.tv_nsec = deadline.tv_nsec - now.tv_nsec;
        if (left.tv_nsec < 0) { left.tv_sec -= 1; left.tv_nsec += 1000000000L; }
        if (left.tv_sec < 0) return -ETIMEDOUT;
        siginfo_t info;
        int r = sigtimedwait(&set, &info, &left);
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        }
        if (info.si_pid == pid && info.si_code == SI_QUEUE) {
            *value = info.si_value.sival_int;
            return 0;
        }
    }
}

/* ---- fds through a unix socket (SCM_RIGHTS), for the restart carrier */

long openclaw_send_with_fds(int socket, const void *bytes, unsigned long length, const int *fds, int n_fds) {
    if (n_fds < 0 || n_fds > OPENCLAW_MAX_FDS_PER_MESSAGE) return -EINVAL;
    union {
        char buffer[CMSG_SPACE(sizeof(int) * OPENCLAW_MAX_FDS_PER_MESSAGE)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct iovec iov = {.iov_base = (void *)bytes, .iov_len = length};
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n_fds > 0) {
        message.msg_control = control.buffer;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(header), fds, sizeof(int) * n_fds);
    }
    ssize_t sent;
    do {
        sent = sendmsg(socket, &message, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    return sent < 0 ? -errno : (long)sent;
}

long openclaw_receive_with_fds(int socket, void *bytes, unsigned long capacity, int *fds, int *n_fds) {
    union {
        char buffer[CMSG_SPACE(sizeof(int) * OPENCLAW_MAX_FDS_PER_MESSAGE)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = bytes, .iov_len = capacity};
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer,
                             .msg_controllen = sizeof(control.buffer)};
    *n_fds = 0;
    ssize_t received;
    do {
        received = recvmsg(socket, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    } while (received < 0 && errno == EINTR);
    if (received < 0) return -errno;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int room = OPENCLAW_MAX_FDS_PER_MESSAGE - *n_fds;
        int *incoming = (int *)CMSG_DATA(header);
        for (int i = 0; i < count; i++) {
            if (i < room) fds[(*n_fds)++] = incoming[i]; else close(incoming[i]);
        }
    }
    if (message.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        for (int i = 0; i < *n_fds; i++) close(fds[i]);
        *n_fds = 0;
        return -EMSGSIZE;
    }
    return (long)received;
}

/* ---- asking another binary a question (the next gateway, before handing it the sessions) */

#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>

int openclaw_run_for_output(const char *path, const char *argument, char *output, int capacity, int timeout_ms) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return -errno;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attributes, &none);      /* the child starts unblocked */
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *const argv[] = {(char *)path, (char *)argument, NULL};
    char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    pid_t child;
    int rc = posix_spawn(&child, path, &actions, &attributes, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    close(out[1]);
    if (rc != 0) {
        close(out[0]);
        return -rc;
    }
    int length = 0, timed_out = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed >= timeout_ms) { timed_out = 1; break; }
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        int ready = poll(&p, 1, (int)(timeout_ms - elapsed));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) { timed_out = ready == 0; break; }
        char buffer[256];
        ssize_t n = read(out[0], buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break; /* EOF: the child closed its stdout */
        int room = capacity - 1 - length;
        int take = n < room ? (int)n : room;
        if (take > 0) { memcpy(output + length, buffer, (size_t)take); length += take; }
    }
    close(out[0]);
    if (capacity > 0) output[length] = 0;
    if (timed_out) kill(child, SIGKILL);
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    if (timed_out) return -ETIMEDOUT;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
