// A small on-demand RTSP server on live555, for the worker's interoperability
// tests (tests/integration/test_interop.py). Modelled after live555's
// testOnDemandRTSPServer: each NAME=FILE argument serves the H.264 (.264) or
// H.265 (.265) elementary stream FILE as rtsp://127.0.0.1:PORT/NAME; each
// session reads the file from its start, at the frame rate in its SPS, and
// ends with it (no looping). With --user and --password,
// every request needs Digest authentication (live555 only implements Digest).
//
// It listens on 127.0.0.1 only: live555 binds to INADDR_ANY (and to the IPv6
// wildcard) by default, so ReceivingInterfaceAddr/SendingInterfaceAddr are set
// to loopback before anything opens a socket, the server is created with an
// IPv4 socket only, and the per-session RTP/RTCP UDP sockets (which live555
// binds to INADDR_ANY whenever it picks their port) get an ephemeral port on
// loopback instead. So RTP goes over the RTSP connection (interleaved TCP)
// only: a client asking for UDP would be told ports nothing listens on.
//
// Usage: streamgrid-live555-server PORT [--user U --password P] NAME=FILE...
// Built by tools/live555/build.sh.
#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "BasicUsageEnvironment.hh"
#include "GroupsockHelper.hh"
#include "liveMedia.hh"

namespace {

// RTSPServer::createNew opens an IPv6 listening socket too; this subclass
// passes only the IPv4 one (bound to ReceivingInterfaceAddr).
class LoopbackRTSPServer : public RTSPServer {
 public:
  static LoopbackRTSPServer* createNew(UsageEnvironment& env, Port port,
                                       UserAuthenticationDatabase* authDB) {
    int socketIPv4 = setUpOurSocket(env, port, AF_INET);
    if (socketIPv4 < 0) return nullptr;
    return new LoopbackRTSPServer(env, socketIPv4, port, authDB);
  }

 protected:
  LoopbackRTSPServer(UsageEnvironment& env, int socketIPv4, Port port,
                     UserAuthenticationDatabase* authDB)
      : RTSPServer(env, socketIPv4, -1, port, authDB, 65) {}
};

// A file subsession whose UDP sockets bind to 127.0.0.1 (port 0 makes
// live555 bind to ReceivingInterfaceAddr; a given port binds to INADDR_ANY).
template <class FileSubsession>
class LoopbackSubsession : public FileSubsession {
 public:
  static LoopbackSubsession* createNew(UsageEnvironment& env, char const* fileName) {
    return new LoopbackSubsession(env, fileName);
  }

 protected:
  LoopbackSubsession(UsageEnvironment& env, char const* fileName)
      : FileSubsession(env, fileName, False) {}

  Groupsock* createGroupsock(struct sockaddr_storage const& address, Port) override {
    return new Groupsock(this->envir(), address, Port(0), 255);
  }
};

bool endsWith(char const* text, char const* suffix) {
  size_t textLength = strlen(text), suffixLength = strlen(suffix);
  return textLength >= suffixLength &&
         strcmp(text + textLength - suffixLength, suffix) == 0;
}

int usage(char const* program) {
  fprintf(stderr,
          "usage: %s PORT [--user U --password P] NAME=FILE.264|FILE.265...\n",
          program);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage(argv[0]);
  int port = atoi(argv[1]);
  if (port <= 0 || port > 65535) return usage(argv[0]);

  char const* user = nullptr;
  char const* password = nullptr;
  int first = 2;
  while (first + 1 < argc && strncmp(argv[first], "--", 2) == 0) {
    if (strcmp(argv[first], "--user") == 0) {
      user = argv[first + 1];
    } else if (strcmp(argv[first], "--password") == 0) {
      password = argv[first + 1];
    } else {
      return usage(argv[0]);
    }
    first += 2;
  }
  if ((user == nullptr) != (password == nullptr) || first >= argc) return usage(argv[0]);

  // Loopback only, set before the first socket is created.
  ReceivingInterfaceAddr = inet_addr("127.0.0.1");
  SendingInterfaceAddr = inet_addr("127.0.0.1");
  // Larger than live555's default (100 kB), so big keyframes are not cut.
  OutPacketBuffer::maxSize = 4000000;

  TaskScheduler* scheduler = BasicTaskScheduler::createNew();
  UsageEnvironment* env = BasicUsageEnvironment::createNew(*scheduler);

  UserAuthenticationDatabase* authDB = nullptr;
  if (user != nullptr) {
    authDB = new UserAuthenticationDatabase("streamgrid-live555");
    authDB->addUserRecord(user, password);
  }

  RTSPServer* server = LoopbackRTSPServer::createNew(*env, Port(port), authDB);
  if (server == nullptr) {
    fprintf(stderr, "cannot create the RTSP server: %s\n", env->getResultMsg());
    return 1;
  }

  for (int i = first; i < argc; ++i) {
    char* argument = argv[i];
    char* equals = strchr(argument, '=');
    if (equals == nullptr || equals == argument) return usage(argv[0]);
    *equals = '\0';
    char const* name = argument;
    char const* file = equals + 1;
    ServerMediaSession* session = ServerMediaSession::createNew(
        *env, name, name, "streamgrid interoperability test stream");
    if (endsWith(file, ".264")) {
      session->addSubsession(LoopbackSubsession<H264VideoFileServerMediaSubsession>::createNew(*env, file));
    } else if (endsWith(file, ".265")) {
      session->addSubsession(LoopbackSubsession<H265VideoFileServerMediaSubsession>::createNew(*env, file));
    } else {
      fprintf(stderr, "%s: only .264 and .265 files are served\n", file);
      return 2;
    }
    server->addServerMediaSession(session);
    char* url = server->rtspURL(session);
    fprintf(stderr, "serving %s as %s\n", file, url);
    delete[] url;
  }
  fprintf(stderr, "ready on 127.0.0.1:%d (live555 %s)\n", port,
          LIVEMEDIA_LIBRARY_VERSION_STRING);
  fflush(stderr);

  env->taskScheduler().doEventLoop();  // does not return
  return 0;
}
