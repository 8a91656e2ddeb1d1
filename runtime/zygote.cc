/*
 * The runtime's zygote: a Node process that has loaded and warmed up the
 * runtime (Playwright, the SDK) once, and forks a copy of itself for each
 * run, so that a run starts with everything loaded instead of spending a
 * third of a second on it. anchorage starts the zygote (`runner.cjs
 * --zygote`) and asks it for runs over a Unix socket; this Node addon is
 * the part that Node cannot do itself: fork, put the child where its run
 * belongs, and end it without Node's teardown.
 *
 * Node is not made to be forked, so the zygote keeps to what makes a fork
 * sound: V8 runs with `--single-threaded` (it posts almost no work to
 * helper threads, which a child does not have: what it still posts, the
 * child's main thread does itself as it joins the job), each of V8's
 * helper threads is parked in a task of ours while the zygote forks (so
 * that none waits on the queue's condition variable, whose state the
 * child inherits: a signal to waiters that no longer exist would block
 * the child for ever), the regions V8 marked not to be
 * inherited (MADV_DONTFORK) are marked inheritable before each fork, the
 * child gives libuv its own event loop (`uv_loop_fork`), and a child ends
 * with `_exit` (Node's exit would wait for helper threads that are not
 * there). libuv's thread pool and OpenSSL's random generator start afresh
 * in a child by themselves (both register fork handlers).
 *
 * The requests (anchorage's `sandbox.rs` writes them) are records of
 * REQUEST_WORDS 64-bit words, with the run's four pipes (stdin, stdout,
 * stderr, result) passed along as SCM_RIGHTS:
 *   [0] the run's user id, 0 to keep the zygote's (a run that is not
 *       isolated); [1] the pid of the process that holds the run's
 *       namespaces (mount, network, IPC), 0 for none; [2] nice; [3] the
 *       memory limit (RLIMIT_DATA); [4] the file size limit; [5] open
 *       files; [6] processes (isolated runs only); [7] 1 for a copy made
 *       ahead of its run (it warms up before its job), else 0.
 * The zygote answers with records of 3 32-bit words: {3, its pid, 0} once
 * as it starts to serve, {1, pid, errno} for a request (pid 0 when the fork
 * failed), and {2, pid, wait status} when a child of it ends.
 */
#include <node.h>
#include <node_api.h>
#include <v8-platform.h>

#include <condition_variable>
#include <memory>
#include <mutex>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <dirent.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>
#include <uv.h>

#define REQUEST_WORDS 8
#define RUN_FDS 4

enum { ANSWER_STARTED = 1, ANSWER_ENDED = 2, ANSWER_READY = 3 };

/* Writes all of `length` bytes, or fails. */
static int write_all(int fd, const void *data, size_t length) {
  const char *at = static_cast<const char *>(data);
  while (length > 0) {
    ssize_t written = write(fd, at, length);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return -1;
    at += written;
    length -= (size_t)written;
  }
  return 0;
}

static int answer(int control, int32_t kind, int32_t pid, int32_t value) {
  int32_t record[3] = {kind, pid, value};
  return write_all(control, record, sizeof record);
}

/*
 * Reads one request: its words and the fds that came with it. Returns 1 for
 * a request, 0 when anchorage closed the socket, -1 on an error.
 */
static int read_request(int control, uint64_t words[REQUEST_WORDS], int fds[RUN_FDS]) {
  char *at = (char *)words;
  size_t left = sizeof(uint64_t) * REQUEST_WORDS;
  int got_fds = 0;
  for (int i = 0; i < RUN_FDS; i++) fds[i] = -1;
  while (left > 0) {
    char space[CMSG_SPACE(sizeof(int) * RUN_FDS)];
    struct iovec part;
    part.iov_base = at;
    part.iov_len = left;
    struct msghdr message;
    memset(&message, 0, sizeof message);
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    message.msg_control = space;
    message.msg_controllen = sizeof space;
    ssize_t read = recvmsg(control, &message, MSG_CMSG_CLOEXEC);
    if (read < 0 && errno == EINTR) continue;
    if (read < 0) return -1;
    if (read == 0) return 0;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
      if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS) {
        size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *passed = (int *)CMSG_DATA(header);
        for (size_t i = 0; i < count; i++) {
          if (got_fds < RUN_FDS) {
            fds[got_fds++] = passed[i];
          } else {
            close(passed[i]);
          }
        }
      }
    }
    at += read;
    left -= (size_t)read;
  }
  return got_fds == RUN_FDS ? 1 : -1;
}

/* V8's helper threads, parked in a task of ours around a fork. */
static struct {
  std::mutex lock;
  std::condition_variable changed;
  int parked = 0;
  bool released = true;
} parking;

class ParkTask : public v8::Task {
 public:
  void Run() override {
    std::unique_lock<std::mutex> held(parking.lock);
    parking.parked++;
    parking.changed.notify_all();
    parking.changed.wait(held, [] { return parking.released; });
    parking.parked--;
  }
};

/*
 * Parks every helper thread of V8's platform. Node counts its thread for
 * delayed tasks among them, which takes no task: all but one must park,
 * the last is given a moment. (At most a second's wait in all.)
 */
static void park_helpers(node::MultiIsolatePlatform *platform) {
  if (!platform) return;
  int helpers = platform->NumberOfWorkerThreads();
  {
    std::lock_guard<std::mutex> held(parking.lock);
    parking.released = false;
  }
  for (int i = 0; i < helpers; i++) platform->CallOnWorkerThread(std::make_unique<ParkTask>());
  std::unique_lock<std::mutex> held(parking.lock);
  parking.changed.wait_for(held, std::chrono::seconds(1), [helpers] { return parking.parked >= helpers - 1; });
  parking.changed.wait_for(held, std::chrono::milliseconds(1), [helpers] { return parking.parked >= helpers; });
}

static void release_helpers() {
  std::lock_guard<std::mutex> held(parking.lock);
  parking.released = true;
  parking.changed.notify_all();
}

/* Marks every mapping of this process as inherited by a fork. */
static void let_forks_inherit_everything() {
  FILE *maps = fopen("/proc/self/maps", "re");
  if (!maps) return;
  char line[512];
  while (fgets(line, sizeof line, maps)) {
    unsigned long start, end;
    if (sscanf(line, "%lx-%lx", &start, &end) == 2) {
      madvise((void *)start, end - start, MADV_DOFORK);
    }
    /* A line longer than the buffer: skip its rest. */
    while (!strchr(line, '\n') && fgets(line, sizeof line, maps)) {
    }
  }
  fclose(maps);
}

/* The zygote's own open files, as each fork found them. */
#define MAX_KNOWN_FDS 512
static struct known_fd {
  int fd;
  dev_t dev;
  ino_t ino;
} known[MAX_KNOWN_FDS];
static int known_count = 0;

/* Notes the zygote's open files (the fds at 4 and up) before a fork. */
static void note_open_files() {
  known_count = 0;
  DIR *dir = opendir("/proc/self/fd");
  if (!dir) return;
  int own = dirfd(dir);
  struct dirent *entry;
  while ((entry = readdir(dir)) && known_count < MAX_KNOWN_FDS) {
    int fd = atoi(entry->d_name);
    struct stat about;
    if (fd < 4 || fd == own || fstat(fd, &about) < 0) continue;
    known[known_count].fd = fd;
    known[known_count].dev = about.st_dev;
    known[known_count].ino = about.st_ino;
    known_count++;
  }
  closedir(dir);
}

/*
 * In a child, before it takes its pipes: every file it inherited from the
 * zygote (event loops of threads it does not have, pipes, eventfds) is
 * replaced by /dev/null, so that no two runs share one (a channel between
 * them). Numbers are kept: libuv closes its main loop's old files itself
 * as it makes new ones (`uv_loop_fork`), and a write to a dead loop goes
 * nowhere. The files fork made anew in the child (libuv's signal lock pipe)
 * are not the zygote's and are kept.
 */
static int forget_inherited_files(int control, const int fds[RUN_FDS]) {
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) return -1;
  for (int i = 0; i < known_count; i++) {
    int fd = known[i].fd;
    struct stat about;
    int passed = fd == control || fd == null;
    for (int j = 0; j < RUN_FDS; j++) passed |= fd == fds[j];
    if (passed || fstat(fd, &about) < 0) continue;
    if (about.st_dev == known[i].dev && about.st_ino == known[i].ino && dup3(null, fd, O_CLOEXEC) < 0) {
      close(null);
      return -1;
    }
  }
  close(null);
  return 0;
}

static int set_limit(int resource, uint64_t value) {
  struct rlimit limit;
  limit.rlim_cur = value;
  limit.rlim_max = value;
  return setrlimit((__rlimit_resource_t)resource, &limit);
}

/* Joins the namespace `name` of process `holder`. */
static int join(pid_t holder, const char *name, int type) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)holder, name);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  int joined = setns(fd, type);
  int error = errno;
  close(fd);
  errno = error;
  return joined;
}

/*
 * In the child: takes the run's place (its namespaces, its pipes at 0 to 3,
 * its limits, its user). Returns 0, or -1 with errno set.
 */
static int become_the_run(int control, int joined, const uint64_t words[REQUEST_WORDS], const int fds[RUN_FDS]) {
  uid_t uid = (uid_t)words[0];
  pid_t holder = (pid_t)words[1];
  if (forget_inherited_files(control, fds) < 0) return -1;
  close(control);
  signal(SIGCHLD, SIG_DFL);
  if (setsid() < 0) return -1;
  if (holder > 0) {
    if (join(holder, "ipc", CLONE_NEWIPC) < 0) return -1;
    if (join(holder, "net", CLONE_NEWNET) < 0) return -1;
    if (join(holder, "mnt", CLONE_NEWNS) < 0) return -1;
    if (chdir("/") < 0) return -1;
  }
  /* In: the holder may go (the zygote answers anchorage now). */
  close(joined);
  for (int i = 0; i < RUN_FDS; i++) {
    if (dup2(fds[i], i) < 0) return -1;
    close(fds[i]);
  }
  if (set_limit(RLIMIT_DATA, words[3]) < 0) return -1;
  if (set_limit(RLIMIT_FSIZE, words[4]) < 0) return -1;
  if (set_limit(RLIMIT_NOFILE, words[5]) < 0) return -1;
  if (set_limit(RLIMIT_CORE, 0) < 0) return -1;
  if (uid != 0 && set_limit(RLIMIT_NPROC, words[6]) < 0) return -1;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -1;
  if (uid != 0) {
    if (setgroups(0, NULL) < 0) return -1;
    if (setresgid(uid, uid, uid) < 0) return -1;
    if (setresuid(uid, uid, uid) < 0) return -1;
  }
  if ((int64_t)words[2] != 0) setpriority(PRIO_PROCESS, 0, (int)(int64_t)words[2]);
  return 0;
}

/* Reaps the zygote's children that ended, telling anchorage of each. */
static int reap(int control) {
  for (;;) {
    int status = 0;
    pid_t ended = waitpid(-1, &status, WNOHANG);
    if (ended <= 0) return 0;
    if (answer(control, ANSWER_ENDED, ended, status) < 0) return -1;
  }
}

static napi_value throw_errno(napi_env env, const char *what) {
  char text[160];
  snprintf(text, sizeof text, "%s: %s", what, strerror(errno));
  napi_throw_error(env, NULL, text);
  return NULL;
}

/*
 * serve(controlFd): the zygote's loop. Never returns in the zygote (it
 * exits when anchorage closes the socket); returns in each child, as
 * { pid, ahead } (its own process id, and whether it was made ahead of its
 * run), once the child has become its run.
 */
static napi_value serve(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t control = -1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &control) != napi_ok) {
    napi_throw_type_error(env, NULL, "serve(controlFd) takes the control socket's fd");
    return NULL;
  }
  /* SIGCHLD blocked, and read through poll's timeout: reaped each turn. */
  v8::Isolate *isolate = v8::Isolate::GetCurrent();
  node::MultiIsolatePlatform *platform =
      isolate ? node::GetMultiIsolatePlatform(node::GetCurrentEnvironment(isolate->GetCurrentContext())) : nullptr;
  sigset_t child_ended;
  sigemptyset(&child_ended);
  sigaddset(&child_ended, SIGCHLD);
  sigprocmask(SIG_BLOCK, &child_ended, NULL);
  if (answer(control, ANSWER_READY, (int32_t)getpid(), 0) < 0) _exit(0);
  for (;;) {
    if (reap(control) < 0) _exit(0);
    struct pollfd wait_for;
    wait_for.fd = control;
    wait_for.events = POLLIN;
    wait_for.revents = 0;
    int ready = poll(&wait_for, 1, 50);
    if (ready < 0 && errno != EINTR) return throw_errno(env, "poll");
    if (ready <= 0) continue;
    uint64_t words[REQUEST_WORDS];
    int fds[RUN_FDS];
    int got = read_request(control, words, fds);
    if (got == 0) _exit(0);
    if (got < 0) {
      for (int i = 0; i < RUN_FDS; i++) {
        if (fds[i] >= 0) close(fds[i]);
      }
      if (answer(control, ANSWER_STARTED, 0, EPROTO) < 0) _exit(0);
      continue;
    }
    let_forks_inherit_everything();
    /* Noted before `joined` is made, which the child must keep. */
    note_open_files();
    /* The child closes its end of `joined` once it is in the holder's
     * namespaces (or has failed): only then may anchorage end the holder. */
    int joined[2];
    if (pipe2(joined, O_CLOEXEC) < 0) {
      for (int i = 0; i < RUN_FDS; i++) close(fds[i]);
      if (answer(control, ANSWER_STARTED, 0, errno) < 0) _exit(0);
      continue;
    }
    park_helpers(platform);
    pid_t child = fork();
    if (child != 0) release_helpers();
    if (child == 0) {
      sigprocmask(SIG_UNBLOCK, &child_ended, NULL);
      close(joined[0]);
      if (become_the_run(control, joined[1], words, fds) < 0) {
        /* The run's result pipe (fd 3, or still where it came) says why. */
        char text[160];
        int length = snprintf(text, sizeof text, "{\"ok\":false,\"error\":\"the run could not be set up: %s\"}\n", strerror(errno));
        (void)!write(fds[3] >= 0 && fcntl(fds[3], F_GETFD) >= 0 ? fds[3] : 3, text, (size_t)length);
        _exit(70);
      }
      uv_loop_t *loop = NULL;
      if (napi_get_uv_event_loop(env, &loop) != napi_ok || uv_loop_fork(loop) != 0) {
        _exit(71);
      }
      napi_value copy, pid, ahead;
      napi_create_object(env, &copy);
      napi_create_int32(env, (int32_t)getpid(), &pid);
      napi_get_boolean(env, words[7] != 0, &ahead);
      napi_set_named_property(env, copy, "pid", pid);
      napi_set_named_property(env, copy, "ahead", ahead);
      return copy;
    }
    int error = child < 0 ? errno : 0;
    close(joined[1]);
    if (child > 0) {
      char none;
      while (read(joined[0], &none, 1) < 0 && errno == EINTR) {
      }
    }
    close(joined[0]);
    for (int i = 0; i < RUN_FDS; i++) close(fds[i]);
    if (answer(control, ANSWER_STARTED, child < 0 ? 0 : child, error) < 0) _exit(0);
  }
}

/* exit(code): ends this process at once, without Node's teardown. */
static napi_value quit(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t code = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc > 0) napi_get_value_int32(env, argv[0], &code);
  _exit(code);
}

NAPI_MODULE_INIT() {
  napi_value function;
  napi_create_function(env, "serve", NAPI_AUTO_LENGTH, serve, NULL, &function);
  napi_set_named_property(env, exports, "serve", function);
  napi_create_function(env, "exit", NAPI_AUTO_LENGTH, quit, NULL, &function);
  napi_set_named_property(env, exports, "exit", function);
  return exports;
}
