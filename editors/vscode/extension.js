// Starts `kdlang lsp` for .kd files and hands it the editor's settings (see README.md).
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate() {
  const settings = vscode.workspace.getConfiguration("kdlang");
  const serverOptions = {
    command: settings.get("server.command", "kdlang"),
    args: ["lsp", ...settings.get("server.args", [])],
    transport: TransportKind.stdio,
  };
  const clientOptions = {
    documentSelector: [
      { scheme: "file", language: "kdlang" },
      { scheme: "untitled", language: "kdlang" },
    ],
    initializationOptions: {
      checkDelay: settings.get("checkDelay", 0.3),
      shapeDelay: settings.get("shapeDelay", 1.5),
      shapes: settings.get("shapes", true),
    },
  };
  client = new LanguageClient("kdlang", "kdlang language server", serverOptions, clientOptions);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
