/*
 * The physical floor for running N short commands, J at a time: a bare
 * posix_spawn/waitpid loop with no capture, no process groups, no
 * bookkeeping. Each job gets its input line number appended as the last
 * argument, like xargs -n 1.
 *
 *   floor N J COMMAND [ARGS...]
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: floor N J COMMAND [ARGS...]\n");
        return 2;
    }
    long n = atol(argv[1]);
    long j = atol(argv[2]);
    int cmdc = argc - 3;
    char **args = calloc((size_t)cmdc + 2, sizeof *args);
    if (!args) return 1;
    memcpy(args, argv + 3, (size_t)cmdc * sizeof *args);
    char num[32];
    args[cmdc] = num;
    long started = 0, running = 0, failed = 0;
    while (started < n || running > 0) {
        while (started < n && running < j) {
            pid_t pid;
            snprintf(num, sizeof num, "%ld", started + 1);
            if (posix_spawnp(&pid, args[0], NULL, NULL, args, environ) != 0) {
                perror("posix_spawnp");
                return 1;
            }
            started++;
            running++;
        }
        int status;
        if (waitpid(-1, &status, 0) > 0) {
            running--;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed++;
        }
    }
    return failed ? 1 : 0;
}
