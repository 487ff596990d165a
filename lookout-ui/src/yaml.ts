// JSON data as YAML, for showing a job's spec. Strings YAML could read as something else
// (numbers, booleans, ones with ': ' or a leading '-') are written in JSON's quoted form, which
// YAML reads as the same string.

const PLAIN = /^[A-Za-z_/.][\w ./@()-]*$/;
const RESERVED = /^(true|false|yes|no|on|off|null|~)$/i;

function scalar(value: unknown): string {
  if (typeof value === "string") {
    return PLAIN.test(value) && !RESERVED.test(value) && !value.endsWith(" ") ? value : JSON.stringify(value);
  }
  return value === null || value === undefined ? "null" : String(value);
}

const isEmpty = (value: unknown) =>
  Array.isArray(value) ? value.length === 0 : typeof value === "object" && value !== null && Object.keys(value).length === 0;

export function toYaml(value: unknown, indent = ""): string {
  if (Array.isArray(value)) {
    return value
      .map((item) => {
        if (typeof item === "object" && item !== null && !isEmpty(item)) {
          const nested = toYaml(item, `${indent}  `);
          return `${indent}- ${nested.slice(indent.length + 2)}`;
        }
        return `${indent}- ${isEmpty(item) ? JSON.stringify(item) : scalar(item)}\n`;
      })
      .join("");
  }
  if (typeof value === "object" && value !== null) {
    return Object.entries(value)
      .map(([key, item]) => {
        if (typeof item === "object" && item !== null && !isEmpty(item)) {
          return `${indent}${scalar(key)}:\n${toYaml(item, `${indent}  `)}`;
        }
        return `${indent}${scalar(key)}: ${isEmpty(item) ? JSON.stringify(item) : scalar(item)}\n`;
      })
      .join("");
  }
  return `${indent}${scalar(value)}\n`;
}
