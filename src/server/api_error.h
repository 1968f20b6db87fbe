// OpenAI-style API errors: {"error": {"message", "type", "param", "code"}}
// with the HTTP status they go out with.
#pragma once
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace ckv::server {

struct ApiError : std::runtime_error {
  // param and code: "" goes out as null. The type follows from the status
  // (400/404/405/413 invalid_request_error, 401 authentication_error, 429
  // rate_limit_error, 5xx server_error).
  ApiError(int status, const std::string& message, std::string param = "", std::string code = "")
      : std::runtime_error(message), status(status), param(std::move(param)), code(std::move(code)) {}
  int status;
  std::string param, code;
};

std::string error_type(int status);
nlohmann::json error_json(const ApiError& e);
// JSON text of any value, invalid UTF-8 replaced (model text may end inside a character).
std::string dump(const nlohmann::json& j);

}  // namespace ckv::server
