/* Thread pool: C99 + POSIX threads (none with -DTXK_NO_THREADS). The pool lives in caller
 * memory (txk_threadpool, opaque storage) and its threads are created by
 * txk_threadpool_init and joined by txk_threadpool_destroy, so a parallel kernel call
 * allocates nothing and creates no thread.
 *
 * One job at a time: txk_parallel(ctx, fn, arg, n) runs fn(arg, t) for t in [0, n) on the
 * calling thread and the workers and returns when all n tasks are done. Tasks are claimed one
 * at a time from a single word holding (n, next index): a claim is a compare-and-swap on the
 * CURRENT word, so a worker that wakes late can never claim a task of a job that is over (it
 * would claim a genuine unclaimed task of the current job, then read the current job's fn/arg,
 * which cannot change before that task is done). The caller therefore waits only for the tasks
 * to finish, never for every worker to check in: a descheduled worker delays a job only by
 * the task it holds. Workers spin for a short while after a job (the next step of a model
 * usually follows within microseconds), then sleep on a condition variable.
 *
 * Results never depend on the thread count: drivers split work into tasks that write disjoint
 * outputs, each computed by the same code in the same order whoever runs it.
 *
 * Compilers with GNU atomics (gcc, clang) use __atomic builtins for the word, the counters
 * and the spin; others fall back to the mutex for every shared access (correct, slower). */
#if !defined(TXK_NO_THREADS) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200112L
#endif

#include <string.h>

#include "internal/txk_internal.h"

#ifndef TXK_NO_THREADS
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#endif

#define TXK_POOL_MAGIC 0x74786b70 /* "txkp" */

#ifndef TXK_NO_THREADS

#if defined(__GNUC__) || defined(__clang__)
#define TXK_ATOMICS 1
#define LOAD(p) __atomic_load_n(p, __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n(p, v, __ATOMIC_RELEASE)
#define CAS(p, expect, desired) \
  __atomic_compare_exchange_n(p, expect, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
#define ADD_FETCH(p, v) __atomic_add_fetch(p, v, __ATOMIC_ACQ_REL)
#define XCHG(p, v) __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL)
#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define CPU_RELAX() ((void)0)
#endif
#else
#define TXK_ATOMICS 0
#endif

/* How long an idle worker spins before it sleeps, and how long the caller spins on the last
 * tasks before it sleeps (nanoseconds). */
#define TXK_WORKER_SPIN_NS 200000L
#define TXK_CALLER_SPIN_NS 50000L

/* The task word: (ntasks << HALF) | next. */
#define HALF (sizeof(size_t) * 4)
#define LOW_MASK (((size_t)1 << HALF) - 1)

typedef struct pool_impl {
  int magic;
  int nthreads; /* workers + the caller */
  int stop;
  int sleepers;       /* workers blocked on `wake` (mutex) */
  int caller_waiting; /* the caller is blocked on `done_cv` (mutex) */
  int busy;           /* a job is being run (atomic exchange) */
  unsigned gen;       /* job generation: workers wake when it changes */
  pthread_mutex_t mu;
  pthread_cond_t wake;
  pthread_cond_t done_cv;
  /* the current job: written by the caller before it publishes `word` */
  txk_task_fn* fn;
  void* arg;
  char pad0_[64];
  size_t word; /* (ntasks << HALF) | next */
  char pad1_[64];
  size_t done; /* tasks finished */
  char pad2_[64];
  pthread_t th[TXK_MAX_THREADS];
} pool_impl;

/* The opaque storage must hold the implementation. */
typedef char txk_pool_fits[(sizeof(pool_impl) <= sizeof(txk_threadpool)) ? 1 : -1];

static pool_impl* impl_of(const txk_threadpool* pool) {
  return (pool_impl*)(void*)pool->opaque_;
}

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Claim one task of the current job: 1 and its index and the job's size, or 0 when none
 * is left. */
static int claim(pool_impl* p, size_t* task, size_t* ntasks) {
#if TXK_ATOMICS
  size_t w = LOAD(&p->word);
  for (;;) {
    const size_t n = w >> HALF, i = w & LOW_MASK;
    if (i >= n) return 0;
    if (CAS(&p->word, &w, w + 1)) {
      *task = i;
      *ntasks = n;
      return 1;
    }
  }
#else
  size_t n, i;
  int ok;
  pthread_mutex_lock(&p->mu);
  n = p->word >> HALF;
  i = p->word & LOW_MASK;
  ok = i < n;
  if (ok) p->word++;
  pthread_mutex_unlock(&p->mu);
  *task = i;
  *ntasks = n;
  return ok;
#endif
}

/* Count one finished task; the worker that finishes the job wakes a sleeping caller. */
static void finish(pool_impl* p, size_t ntasks, int is_caller) {
#if TXK_ATOMICS
  if (ADD_FETCH(&p->done, 1) == ntasks && !is_caller) {
    pthread_mutex_lock(&p->mu);
    if (p->caller_waiting) pthread_cond_signal(&p->done_cv);
    pthread_mutex_unlock(&p->mu);
  }
#else
  pthread_mutex_lock(&p->mu);
  if (++p->done == ntasks && !is_caller && p->caller_waiting) pthread_cond_signal(&p->done_cv);
  pthread_mutex_unlock(&p->mu);
#endif
}

static void run_tasks(pool_impl* p, int is_caller) {
  size_t t, n;
  while (claim(p, &t, &n)) {
    p->fn(p->arg, t); /* fn/arg cannot change while a claimed task is unfinished */
    finish(p, n, is_caller);
  }
}

static unsigned load_gen(pool_impl* p) {
#if TXK_ATOMICS
  return LOAD(&p->gen);
#else
  unsigned g;
  pthread_mutex_lock(&p->mu);
  g = p->gen;
  pthread_mutex_unlock(&p->mu);
  return g;
#endif
}

static void* worker_main(void* arg) {
  pool_impl* p = (pool_impl*)arg;
  unsigned seen = load_gen(p);
  for (;;) {
#if TXK_ATOMICS
    {
      const long t0 = now_ns();
      int k = 0;
      while (LOAD(&p->gen) == seen && !LOAD(&p->stop)) {
        CPU_RELAX();
        if (++k == 64) {
          k = 0;
          if (now_ns() - t0 > TXK_WORKER_SPIN_NS) break;
        }
      }
    }
#endif
    pthread_mutex_lock(&p->mu);
    while (p->gen == seen && !p->stop) {
      p->sleepers++;
      pthread_cond_wait(&p->wake, &p->mu);
      p->sleepers--;
    }
    seen = p->gen;
    if (p->stop) {
      pthread_mutex_unlock(&p->mu);
      break;
    }
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, 0);
  }
  return NULL;
}

static size_t load_done(pool_impl* p) {
#if TXK_ATOMICS
  return LOAD(&p->done);
#else
  size_t d;
  pthread_mutex_lock(&p->mu);
  d = p->done;
  pthread_mutex_unlock(&p->mu);
  return d;
#endif
}

/* Run the job on the pool (the caller holds `busy`). */
static void pool_run(pool_impl* p, txk_task_fn* fn, void* arg, size_t ntasks) {
  p->fn = fn;
  p->arg = arg;
#if TXK_ATOMICS
  STORE(&p->done, (size_t)0);
  STORE(&p->word, ntasks << HALF);
  pthread_mutex_lock(&p->mu);
  STORE(&p->gen, p->gen + 1u);
#else
  pthread_mutex_lock(&p->mu);
  p->done = 0;
  p->word = ntasks << HALF;
  p->gen++;
#endif
  if (p->sleepers) pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  run_tasks(p, 1);
#if TXK_ATOMICS
  {
    const long t0 = now_ns();
    int k = 0;
    while (LOAD(&p->done) != ntasks) {
      CPU_RELAX();
      if (++k == 64) {
        k = 0;
        if (now_ns() - t0 > TXK_CALLER_SPIN_NS) break;
      }
    }
  }
#endif
  if (load_done(p) != ntasks) {
    pthread_mutex_lock(&p->mu);
#if TXK_ATOMICS
    while (LOAD(&p->done) != ntasks) { /* the last increment takes the mutex to signal */
#else
    while (p->done != ntasks) {
#endif
      p->caller_waiting = 1;
      pthread_cond_wait(&p->done_cv, &p->mu);
    }
    p->caller_waiting = 0;
    pthread_mutex_unlock(&p->mu);
  }
}

static int try_acquire(pool_impl* p) {
#if TXK_ATOMICS
  return XCHG(&p->busy, 1) == 0;
#else
  int ok;
  pthread_mutex_lock(&p->mu);
  ok = !p->busy;
  p->busy = 1;
  pthread_mutex_unlock(&p->mu);
  return ok;
#endif
}

static void release(pool_impl* p) {
#if TXK_ATOMICS
  STORE(&p->busy, 0);
#else
  pthread_mutex_lock(&p->mu);
  p->busy = 0;
  pthread_mutex_unlock(&p->mu);
#endif
}

int txk_online_cpus(void) {
#if defined(_SC_NPROCESSORS_ONLN)
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n >= 1) return n > TXK_MAX_THREADS ? TXK_MAX_THREADS : (int)n;
#endif
  return 1;
}

static void stop_workers(pool_impl* p, int started) {
  int i;
  pthread_mutex_lock(&p->mu);
#if TXK_ATOMICS
  STORE(&p->stop, 1);
  STORE(&p->gen, p->gen + 1u);
#else
  p->stop = 1;
  p->gen++;
#endif
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (i = 0; i < started; i++) pthread_join(p->th[i], NULL);
}

int txk_threadpool_init(txk_threadpool* pool, int threads) {
  pool_impl* p;
  int i;
  if (pool == NULL || threads < 0) return TXK_EINVAL;
  memset(pool, 0, sizeof *pool);
  p = impl_of(pool);
  if (threads == 0) threads = txk_online_cpus();
  if (threads > TXK_MAX_THREADS) threads = TXK_MAX_THREADS;
  p->nthreads = 1;
  if (threads > 1) {
    if (pthread_mutex_init(&p->mu, NULL) != 0) return TXK_ETHREAD;
    if (pthread_cond_init(&p->wake, NULL) != 0) {
      pthread_mutex_destroy(&p->mu);
      return TXK_ETHREAD;
    }
    if (pthread_cond_init(&p->done_cv, NULL) != 0) {
      pthread_cond_destroy(&p->wake);
      pthread_mutex_destroy(&p->mu);
      return TXK_ETHREAD;
    }
    for (i = 0; i < threads - 1; i++) {
      if (pthread_create(&p->th[i], NULL, worker_main, p) != 0) {
        stop_workers(p, i);
        pthread_cond_destroy(&p->done_cv);
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->mu);
        memset(pool, 0, sizeof *pool);
        return TXK_ETHREAD;
      }
    }
    p->nthreads = threads;
  }
  p->magic = TXK_POOL_MAGIC;
  return TXK_OK;
}

void txk_threadpool_destroy(txk_threadpool* pool) {
  pool_impl* p;
  if (pool == NULL) return;
  p = impl_of(pool);
  if (p->magic != TXK_POOL_MAGIC) return;
  if (p->nthreads > 1) {
    stop_workers(p, p->nthreads - 1);
    pthread_cond_destroy(&p->done_cv);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
  }
  memset(pool, 0, sizeof *pool);
}

int txk_threadpool_threads(const txk_threadpool* pool) {
  const pool_impl* p;
  if (pool == NULL) return 1;
  p = impl_of(pool);
  return p->magic == TXK_POOL_MAGIC ? p->nthreads : 1;
}

void txk_parallel(const txk_context* ctx, txk_task_fn* fn, void* arg, size_t ntasks) {
  pool_impl* p = ctx->pool ? impl_of(ctx->pool) : NULL;
  size_t t;
  if (ntasks > 1 && p != NULL && p->magic == TXK_POOL_MAGIC && p->nthreads > 1 &&
      ntasks <= LOW_MASK && try_acquire(p)) {
    pool_run(p, fn, arg, ntasks);
    release(p);
    return;
  }
  /* one thread, one task, or the pool is running another job (a concurrent or nested call) */
  for (t = 0; t < ntasks; t++) fn(arg, t);
}

#else /* TXK_NO_THREADS: the same API, everything on the calling thread */

typedef struct pool_impl {
  int magic;
  int nthreads;
} pool_impl;

int txk_online_cpus(void) { return 1; }

int txk_threadpool_init(txk_threadpool* pool, int threads) {
  pool_impl* p;
  if (pool == NULL || threads < 0) return TXK_EINVAL;
  memset(pool, 0, sizeof *pool);
  p = (pool_impl*)(void*)pool->opaque_;
  p->magic = TXK_POOL_MAGIC;
  p->nthreads = 1;
  return TXK_OK;
}

void txk_threadpool_destroy(txk_threadpool* pool) {
  if (pool != NULL) memset(pool, 0, sizeof *pool);
}

int txk_threadpool_threads(const txk_threadpool* pool) {
  (void)pool;
  return 1;
}

void txk_parallel(const txk_context* ctx, txk_task_fn* fn, void* arg, size_t ntasks) {
  size_t t;
  (void)ctx;
  for (t = 0; t < ntasks; t++) fn(arg, t);
}

#endif /* TXK_NO_THREADS */

/* How many tasks a call of `work` multiply-adds (or elements) should have on ctx's threads:
 * about TXK_TASKS_PER_THREAD per thread, none smaller than `min_work`. */
size_t txk_want_tasks(const txk_context* ctx, double work, double min_work) {
  const size_t threads = (size_t)txk_context_threads(ctx);
  double by_work;
  size_t want;
  if (threads <= 1) return 1;
  by_work = work / min_work;
  want = threads * TXK_TASKS_PER_THREAD;
  if (by_work < (double)want) want = by_work < 1.0 ? 1 : (size_t)by_work;
  return want;
}

typedef struct range_job {
  txk_range_fn* fn;
  const void* arg;
  size_t units, unit, n, ntasks;
} range_job;

static void range_task(void* arg, size_t t) {
  const range_job* j = (const range_job*)arg;
  const size_t b = t * j->units / j->ntasks * j->unit;
  size_t e = (t + 1) * j->units / j->ntasks * j->unit;
  if (e > j->n) e = j->n;
  if (b < e) j->fn(j->arg, b, e);
}

static void parallel_range(const txk_context* ctx, txk_range_fn* fn, const void* arg, size_t n,
                           size_t unit, double work_per_item, double min_work, size_t max_tasks) {
  range_job j;
  size_t want;
  if (n == 0) return;
  if (unit < 1) unit = 1;
  j.units = (n + unit - 1) / unit;
  want = txk_want_tasks(ctx, (double)n * work_per_item, min_work);
  if (want > max_tasks) want = max_tasks;
  if (want > j.units) want = j.units;
  if (want <= 1) {
    fn(arg, 0, n);
    return;
  }
  j.fn = fn;
  j.arg = arg;
  j.unit = unit;
  j.n = n;
  j.ntasks = want;
  txk_parallel(ctx, range_task, &j, want);
}

void txk_parallel_range(const txk_context* ctx, txk_range_fn* fn, const void* arg, size_t n,
                        size_t unit, double work_per_item, double min_work) {
  parallel_range(ctx, fn, arg, n, unit, work_per_item, min_work, (size_t)-1);
}

void txk_parallel_bands(const txk_context* ctx, txk_range_fn* fn, const void* arg, size_t n,
                        size_t unit, double work_per_item, double min_work) {
  parallel_range(ctx, fn, arg, n, unit, work_per_item, min_work,
                 (size_t)txk_context_threads(ctx));
}

size_t txk_threadpool_size(void) { return sizeof(txk_threadpool); }

int txk_context_set_threadpool(txk_context* ctx, txk_threadpool* pool) {
  if (ctx == NULL) return TXK_EINVAL;
  ctx->pool = pool;
  return TXK_OK;
}

int txk_context_threads(const txk_context* ctx) {
  if (ctx == NULL || ctx->pool == NULL) return 1;
  return txk_threadpool_threads(ctx->pool);
}
