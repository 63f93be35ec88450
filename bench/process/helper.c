/*
 * Helper for bench/process/run.sh: the tasks the runners start, and the
 * clocks that time them. All times are CLOCK_REALTIME in nanoseconds, so
 * stamps taken by different processes compare.
 *
 *   helper task DIR MARKER ROLE
 *       A task (ROLE last, so runners that append their input line to the
 *       command give it the role). ROLE is `sleep` (waits for a signal; SIGTERM ends it),
 *       `sleepg` (the same, with a grandchild in its process group), or
 *       `fail` (waits until DIR holds 4 ready files, writes DIR/failed_at
 *       right before exiting 1). A sleeper writes DIR/ready.PID holding
 *       "START_NS PID [GRANDCHILD_PID]" once set up. MARKER only makes the
 *       processes findable in /proc.
 *
 *   helper run STAMPFILE COMMAND [ARGS...]
 *       Runs COMMAND and, the moment it has exited, writes the time to
 *       STAMPFILE; exits with its status.
 *
 *   helper dead DIR TIMEOUT_MS
 *       Waits for one ready file in DIR, then (pidfds, no polling) until
 *       the task and its grandchild have both exited; prints "START_NS
 *       DEAD_NS". Gives up after TIMEOUT_MS (prints "START_NS -1").
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Writes TEXT to PATH atomically (write a temporary file, rename it). */
static void publish(const char *path, const char *text) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) { perror(tmp); _exit(3); }
    fputs(text, f);
    fclose(f);
    if (rename(tmp, path) != 0) { perror(path); _exit(3); }
}

static int count_ready(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "ready.", 6) == 0 && !strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static int task(const char *role, const char *dir) {
    long long start = now_ns();
    char path[4096], text[256];
    if (strcmp(role, "fail") == 0) {
        while (count_ready(dir) < 4) sleep_ms(1);
        snprintf(path, sizeof path, "%s/failed_at", dir);
        snprintf(text, sizeof text, "%lld\n", now_ns());
        publish(path, text);
        _exit(1);
    }
    pid_t grandchild = 0;
    if (strcmp(role, "sleepg") == 0) {
        grandchild = fork();
        if (grandchild == 0) {
            for (;;) pause();
        }
    }
    snprintf(path, sizeof path, "%s/ready.%d", dir, getpid());
    if (grandchild)
        snprintf(text, sizeof text, "%lld %d %d\n", start, getpid(), grandchild);
    else
        snprintf(text, sizeof text, "%lld %d\n", start, getpid());
    publish(path, text);
    for (;;) pause();
}

static int run(const char *stamp, char **argv) {
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[0], argv);
        perror(argv[0]);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    char text[64];
    snprintf(text, sizeof text, "%lld\n", now_ns());
    publish(stamp, text);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int dead(const char *dir, long timeout_ms) {
    long long give_up = now_ns() + timeout_ms * 1000000LL;
    char name[4096] = "";
    while (!name[0]) {
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (strncmp(e->d_name, "ready.", 6) == 0 && !strstr(e->d_name, ".tmp."))
                snprintf(name, sizeof name, "%s/%s", dir, e->d_name);
        if (d) closedir(d);
        if (!name[0]) {
            if (now_ns() > give_up) { puts("-1 -1"); return 1; }
            sleep_ms(1);
        }
    }
    FILE *f = fopen(name, "r");
    long long start = 0;
    int pids[2] = {0, 0};
    if (!f || fscanf(f, "%lld %d %d", &start, &pids[0], &pids[1]) < 2) {
        fprintf(stderr, "bad ready file %s\n", name);
        return 2;
    }
    fclose(f);
    struct pollfd fds[2];
    int nfds = 0;
    for (int i = 0; i < 2; i++) {
        if (!pids[i]) continue;
        int fd = (int)syscall(SYS_pidfd_open, pids[i], 0);
        if (fd < 0) continue; /* already gone */
        fds[nfds].fd = fd;
        fds[nfds].events = POLLIN;
        nfds++;
    }
    long long last = now_ns();
    for (int i = 0; i < nfds; i++) {
        for (;;) {
            long left = (long)((give_up - now_ns()) / 1000000LL);
            if (left <= 0) { printf("%lld -1\n", start); return 1; }
            int r = poll(&fds[i], 1, (int)left);
            if (r > 0) break;
        }
        last = now_ns();
    }
    printf("%lld %lld\n", start, last);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "task") == 0) return task(argv[4], argv[2]);
    if (argc >= 4 && strcmp(argv[1], "run") == 0) return run(argv[2], argv + 3);
    if (argc == 4 && strcmp(argv[1], "dead") == 0) return dead(argv[2], atol(argv[3]));
    fprintf(stderr, "usage: see the comment at the top of helper.c\n");
    return 2;
}
