; powergate per-user installer (NSIS 3). Built on Linux by installer/build.sh.
; Installs into %LOCALAPPDATA%\Programs\powergate without admin rights: a private
; virtualenv of the user's Python 3.10+ (found with the py launcher), filled offline
; from the bundled wheels; the agent starts with pythonw (no console window).

Unicode true
!include "MUI2.nsh"
!include "LogicLib.nsh"

!ifndef VERSION
  !define VERSION "0.0.0"
!endif
!define APP "powergate"
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${APP}"
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"

Name "${APP} ${VERSION}"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\${APP}"
InstallDirRegKey HKCU "${UNINST_KEY}" "InstallLocation"
RequestExecutionLevel user
SetCompressor /SOLID lzma
Icon "${PAYLOAD}\powergate.ico"
UninstallIcon "${PAYLOAD}\powergate.ico"
VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${APP}"
VIAddVersionKey "FileDescription" "powergate installer"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "LegalCopyright" "MIT"

!define MUI_ICON "${PAYLOAD}\powergate.ico"
!define MUI_UNICON "${PAYLOAD}\powergate.ico"
!define MUI_FINISHPAGE_RUN
!define MUI_FINISHPAGE_RUN_TEXT "Start powergate now"
!define MUI_FINISHPAGE_RUN_FUNCTION StartAgent
!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Var Python

Function FindPython
  ; The py launcher picks the newest Python 3; we need 3.10 or newer.
  nsExec::ExecToStack 'py -3 -c "import sys; print(sys.executable); sys.exit(0 if sys.version_info >= (3, 10) else 1)"'
  Pop $0
  Pop $1
  ${If} $0 != 0
    MessageBox MB_ICONSTOP|MB_OK "powergate needs Python 3.10 or newer, started through the py launcher.$\r$\n$\r$\nInstall Python from https://www.python.org/downloads/windows/ (keep 'py launcher' ticked), then run this installer again."
    Abort
  ${EndIf}
  StrCpy $Python "py -3"
FunctionEnd

Function StartAgent
  Exec '"$INSTDIR\venv\Scripts\pythonw.exe" -m agent run'
FunctionEnd

Section "powergate (required)" SecMain
  SectionIn RO
  Call FindPython
  SetOutPath "$INSTDIR"
  ; An upgrade in place: stop the running agent, replace program files. The user's
  ; config, cache and logs live in %LOCALAPPDATA%\powergate and are kept.
  IfFileExists "$INSTDIR\venv\Scripts\python.exe" 0 +2
    nsExec::Exec '"$INSTDIR\venv\Scripts\python.exe" "$INSTDIR\stop_agent.py"'
  RMDir /r "$INSTDIR\venv"
  RMDir /r "$INSTDIR\wheels"
  File /r "${PAYLOAD}\wheels"
  File "${PAYLOAD}\powergate.ico"
  File "${PAYLOAD}\stop_agent.py"
  DetailPrint "Creating a private Python environment..."
  nsExec::ExecToLog '$Python -m venv "$INSTDIR\venv"'
  Pop $0
  ${If} $0 != 0
    MessageBox MB_ICONSTOP|MB_OK "Could not create a Python virtual environment in $INSTDIR\venv."
    Abort
  ${EndIf}
  DetailPrint "Installing powergate from the bundled wheels (offline)..."
  nsExec::ExecToLog '"$INSTDIR\venv\Scripts\python.exe" -m pip install --no-index --find-links "$INSTDIR\wheels" powergate'
  Pop $0
  ${If} $0 != 0
    MessageBox MB_ICONSTOP|MB_OK "Installing powergate into $INSTDIR\venv failed (see the details)."
    Abort
  ${EndIf}
  CreateDirectory "$SMPROGRAMS\${APP}"
  CreateShortcut "$SMPROGRAMS\${APP}\${APP}.lnk" "$INSTDIR\venv\Scripts\pythonw.exe" "-m agent run" "$INSTDIR\powergate.ico"
  CreateShortcut "$SMPROGRAMS\${APP}\${APP} dashboard.lnk" "http://127.0.0.1:11435/dashboard" "" "$INSTDIR\powergate.ico"
  CreateShortcut "$SMPROGRAMS\${APP}\Uninstall ${APP}.lnk" "$INSTDIR\uninstall.exe"
  WriteUninstaller "$INSTDIR\uninstall.exe"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayName" "${APP}"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINST_KEY}" "Publisher" "powergate"
  WriteRegStr HKCU "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\powergate.ico"
  WriteRegStr HKCU "${UNINST_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoRepair" 1
SectionEnd

Section "Start at login" SecAutostart
  ; The same Run value `powergate autostart enable` writes (and honours Task Manager's switch).
  nsExec::ExecToLog '"$INSTDIR\venv\Scripts\python.exe" -m agent autostart enable'
SectionEnd

LangString DESC_Main ${LANG_ENGLISH} "The powergate agent, in a private Python environment."
LangString DESC_Autostart ${LANG_ENGLISH} "Start powergate quietly into the tray when you log in."
!insertmacro MUI_FUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${SecMain} $(DESC_Main)
  !insertmacro MUI_DESCRIPTION_TEXT ${SecAutostart} $(DESC_Autostart)
!insertmacro MUI_FUNCTION_DESCRIPTION_END

Section "Uninstall"
  IfFileExists "$INSTDIR\venv\Scripts\python.exe" 0 +2
    nsExec::Exec '"$INSTDIR\venv\Scripts\python.exe" "$INSTDIR\stop_agent.py"'
  DeleteRegValue HKCU "${RUN_KEY}" "${APP}"
  RMDir /r "$SMPROGRAMS\${APP}"
  RMDir /r "$INSTDIR\venv"
  RMDir /r "$INSTDIR\wheels"
  Delete "$INSTDIR\powergate.ico"
  Delete "$INSTDIR\stop_agent.py"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "${UNINST_KEY}"
  MessageBox MB_YESNO|MB_ICONQUESTION "Also delete your powergate settings, cache and logs ($LOCALAPPDATA\${APP})?" IDNO keep
    RMDir /r "$LOCALAPPDATA\${APP}"
  keep:
SectionEnd
