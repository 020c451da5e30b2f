// Errors of the pythonexec client. Every error has a `code`; a Python exception is a
// PythonError whose `type` is the exception's qualified type name.

/** A Python exception raised by the code a request ran. */
export class PythonError extends Error {
  constructor(exc) {
    super(`${exc.type}: ${exc.message}`);
    this.name = "PythonError";
    this.code = "PYTHON";
    /** Qualified type: `ValueError`, `litellm.exceptions.AuthenticationError`. */
    this.type = String(exc.type);
    /** The exception's own message. */
    this.pythonMessage = String(exc.message ?? "");
    /** As `traceback.format_exception` prints it. */
    this.traceback = String(exc.traceback ?? "");
  }
}

/**
 * Anything else: `code` is one of INTERPRETER_NOT_FOUND, SPAWN, WORKER_START, WORKER_DIED,
 * PROTOCOL_VERSION, TIMEOUT, CANCELLED, BAD_REPLY, SHUT_DOWN, NON_ZERO_EXIT, BAD_JSON.
 * `details` carries the facts (pid, status, stderrTail, line, ...).
 */
export class WorkerError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = "WorkerError";
    this.code = code;
    this.details = details;
  }
}

/** Keep the last `max` characters of `text`, for messages. */
export function tail(text, max = 2000) {
  const t = String(text).trimEnd();
  return t.length <= max ? t : "..." + t.slice(t.length - max);
}
