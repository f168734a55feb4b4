// Version string reported by the server in logs and health output.
namespace sd {
const char* ServerVersion() { return "streamdistill-server 0.1.0"; }
}  // namespace sd
