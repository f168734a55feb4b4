// Throw-away certificates for the TLS tests (the server's gRPC port, the edge's MQTT broker),
// made at test time with the openssl command line. EC P-256 keys: a few milliseconds each.
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace sd::testing {

// Writes into `dir` (which exists):
//   ca.pem, ca.key                a CA, "streamdistill-test-ca"
//   server.pem, server.key        signed by it, for DNS:localhost and IP:127.0.0.1 (serverAuth)
//   client.pem, client.key        signed by it, CN cam1 (clientAuth)
//   elsewhere.pem, elsewhere.key  signed by it, for DNS:elsewhere.example only: checked against
//                                 localhost or 127.0.0.1, its name must not match
//   other_ca.pem, other_ca.key    an unrelated CA: trusting it instead of ca.pem must fail
// Returns "" when they were made, else why not, with openssl's output: a GTEST_SKIP reason.
inline std::string MakeTestCertificates(const std::string& dir) {
  std::ofstream(dir + "/server_ext.cnf") << "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                            "extendedKeyUsage=serverAuth\n";
  std::ofstream(dir + "/client_ext.cnf") << "extendedKeyUsage=clientAuth\n";
  std::ofstream(dir + "/elsewhere_ext.cnf") << "subjectAltName=DNS:elsewhere.example\nextendedKeyUsage=serverAuth\n";
  const std::string key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string script =
      "cd '" + dir + "' && "
      "openssl req -x509" + key + " -keyout ca.key -out ca.pem -days 2 -subj /CN=streamdistill-test-ca && "
      "openssl req" + key + " -keyout server.key -out server.csr -subj /CN=localhost && "
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 "
      "-extfile server_ext.cnf && "
      "openssl req" + key + " -keyout client.key -out client.csr -subj /CN=cam1 && "
      "openssl req -x509" + key + " -keyout other_ca.key -out other_ca.pem -days 2 -subj /CN=unrelated-ca && "
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 "
      "-extfile client_ext.cnf && "
      "openssl req" + key + " -keyout elsewhere.key -out elsewhere.csr -subj /CN=elsewhere.example && "
      "openssl x509 -req -in elsewhere.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out elsewhere.pem -days 2 "
      "-extfile elsewhere_ext.cnf";
  const int rc = std::system(("(" + script + ") > '" + dir + "/openssl.log' 2>&1").c_str());
  if (rc == 0) return "";
  std::ifstream log(dir + "/openssl.log");
  std::stringstream output;
  output << log.rdbuf();
  return "openssl could not make test certificates (rc " + std::to_string(rc) +
         "; apt-get install openssl): " + output.str();
}

}  // namespace sd::testing
