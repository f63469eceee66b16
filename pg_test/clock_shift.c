/*
 * clock_shift: an LD_PRELOAD library that moves the wall clock of a process (and of
 * every process it starts) by a fixed number of seconds. The clock keeps running at
 * its real rate; monotonic clocks, sleeps and timers are untouched.
 *
 *   AUDIT_DB_CLOCK_OFFSET=<seconds> LD_PRELOAD=clock_shift.so postgres ...
 *
 * pg_test/any_date.sh starts the test clusters under it. Why not Debian's libfaketime:
 * while a process blocks in a call libfaketime wraps (nanosleep, poll, epoll_wait,
 * select ...) it reads the real clock, so a signal handler that runs then sees the real
 * time. PostgreSQL's timeout handler (lock_timeout, statement_timeout) runs exactly
 * there: it compared the real "now" to a deadline set in faked time and re-armed the
 * timer for the difference (453 days), so no timeout ever fired.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long offset_seconds(void)
{
    static int known = 0;
    static long long offset = 0;

    if (!known) {
        const char *v = getenv("AUDIT_DB_CLOCK_OFFSET");

        offset = v ? strtoll(v, NULL, 10) : 0;
        known = 1;
    }
    return offset;
}

int clock_gettime(clockid_t clk, struct timespec *ts)
{
    static int (*real)(clockid_t, struct timespec *) = NULL;
    int rc;

    if (!real)
        real = (int (*)(clockid_t, struct timespec *)) dlsym(RTLD_NEXT, "clock_gettime");
    rc = real(clk, ts);
    if (rc == 0 && ts && (clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE || clk == CLOCK_TAI))
        ts->tv_sec += offset_seconds();
    return rc;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    static int (*real)(struct timeval *restrict, void *restrict) = NULL;
    int rc;

    if (!real)
        real = (int (*)(struct timeval *restrict, void *restrict)) dlsym(RTLD_NEXT, "gettimeofday");
    rc = real(tv, tz);
    if (rc == 0 && tv)
        tv->tv_sec += offset_seconds();
    return rc;
}

time_t time(time_t *out)
{
    struct timespec ts;
    time_t t;

    clock_gettime(CLOCK_REALTIME, &ts);
    t = ts.tv_sec;
    if (out)
        *out = t;
    return t;
}
