// Version string the edge sends in its hello.
namespace sd {
const char* EdgeVersion() { return "streamdistill-edge 0.1.0"; }
}  // namespace sd
